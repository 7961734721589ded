// Package testenv starts a real kube-apiserver and etcd, with the Hookline
// CRDs installed, for the test suites. The binaries are built from source by
// hack/envtest.sh and cached outside the clone.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// RepoRoot is the root of the source tree.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// AssetsDir returns the directory holding kube-apiserver and etcd:
// KUBEBUILDER_ASSETS when set (make test sets it), otherwise the output of
// hack/envtest.sh, which builds the binaries on first use. So a plain
// `go test ./...` works too.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "envtest.sh"))
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the test API server with hack/envtest.sh: %w", err)
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Start starts the API server and etcd with the CRDs of config/crd/bases
// installed. Stop the returned environment when done.
func Start() (*envtest.Environment, *rest.Config, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting the test API server: %w", err)
	}
	// The suites create many objects quickly; the client-side rate limiter
	// would only slow them down against a local server.
	cfg.QPS, cfg.Burst = 500, 1000
	return env, cfg, nil
}

// ReadManifests decodes every object of the YAML files matching pattern,
// relative to the repository root, skipping kustomization.yaml files.
func ReadManifests(pattern string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(RepoRoot(), pattern))
	if err != nil {
		return nil, fmt.Errorf("matching %s: %w", pattern, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no files match %s", pattern)
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading manifests: %w", err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("decoding %s: %w", f, err)
			}
			if len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
	}
	return objs, nil
}

// ServiceAccountKubeconfig writes into dir a kubeconfig whose client
// certificate the API server of env takes for ServiceAccount ns/name, so
// exactly the RBAC bound to that account applies, as in a cluster.
func ServiceAccountKubeconfig(env *envtest.Environment, dir, ns, name string) (string, error) {
	user, err := env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + ns + ":" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}, nil)
	if err != nil {
		return "", fmt.Errorf("provisioning the user of ServiceAccount %s/%s: %w", ns, name, err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("rendering the kubeconfig of ServiceAccount %s/%s: %w", ns, name, err)
	}
	path := filepath.Join(dir, ns+"-"+name+".kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("writing the kubeconfig of ServiceAccount %s/%s: %w", ns, name, err)
	}
	return path, nil
}
