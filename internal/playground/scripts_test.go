package playground

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/hookline/hookline/test/testenv"
)

// TestEnvtestScriptSaysItWaitsForAnotherBuild holds hack/envtest.sh's
// build lock, as another make test or make dev building the API server
// binaries does, and checks that the script says it waits for that build,
// at least every interval, and then uses its result instead of building.
func TestEnvtestScriptSaysItWaitsForAnotherBuild(t *testing.T) {
	root := testenv.RepoRoot()
	cache := t.TempDir()
	lock, err := os.OpenFile(filepath.Join(cache, ".envtest.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(filepath.Join(root, "hack", "envtest.sh"))
	cmd.Env = append(os.Environ(), "HOOKLINE_CACHE_DIR="+cache, "HOOKLINE_PROGRESS_INTERVAL=1")
	var stdout strings.Builder
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &stderr, "Waiting for another build of kube-apiserver and etcd")
	waitOutput(t, &stderr, "  still waiting for another build of kube-apiserver and etcd (")

	// The other build finishes: its binaries appear, and it lets go.
	dir := filepath.Join(cache, "envtest", envtestCacheKey(t, root))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(dir, bin), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("hack/envtest.sh: %v\n%s", err, stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != dir {
		t.Errorf("printed %q, want %q", got, dir)
	}
	if !strings.Contains(stderr.String(), "The other build finished: using "+dir) || strings.Contains(stderr.String(), "Building") {
		t.Errorf("progress:\n%s", stderr.String())
	}
}

// envtestCacheKey is the cache directory name hack/envtest.sh uses: the
// Kubernetes version and a hash of hack/envtest's go.mod and go.sum.
func envtestCacheKey(t *testing.T, root string) string {
	t.Helper()
	mod, err := os.ReadFile(filepath.Join(root, "hack", "envtest", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "hack", "envtest", "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	version := regexp.MustCompile(`(?m)^\s*k8s\.io/kubernetes (v\S+)`).FindSubmatch(mod)
	if version == nil {
		t.Fatal("hack/envtest/go.mod requires no k8s.io/kubernetes version")
	}
	h := sha256.Sum256(append(mod, sum...))
	return string(version[1]) + "-" + hex.EncodeToString(h[:])[:12]
}

// TestProgressScript checks hack/progress.sh, which make dev runs the
// playground's compilation under: a line at least every interval while the
// command runs, and the command's exit status.
func TestProgressScript(t *testing.T) {
	script := filepath.Join(testenv.RepoRoot(), "hack", "progress.sh")
	cmd := exec.Command(script, "compiling the playground", "sh", "-c", "sleep 2.5; exit 3")
	cmd.Env = append(os.Environ(), "HOOKLINE_PROGRESS_INTERVAL=1")
	out, err := cmd.CombinedOutput()
	exitErr, ok := err.(*exec.ExitError)
	if !ok || exitErr.ExitCode() != 3 {
		t.Errorf("exit %v, want status 3", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	line := regexp.MustCompile(`^  still compiling the playground \(\d+s so far\)$`)
	if len(lines) < 1 || lines[0] == "" {
		t.Errorf("printed %q, want a line for each second the command ran", out)
	}
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Errorf("line %q does not match %s", l, line)
		}
	}
}
