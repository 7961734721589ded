package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/test/testenv"
)

// The test API server's harness logs through controller-runtime, which
// warns (with a stack) when no logger is set.
func init() { ctrllog.SetLogger(logr.Discard()) }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds cmd/manager and cmd/dispatcher once per test run.
func binaries(t *testing.T) (manager, dispatcher string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "hookline-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, name := range []string{"manager", "dispatcher"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), "./cmd/"+name)
			cmd.Dir = testenv.RepoRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("building %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "manager"), filepath.Join(binDir, "dispatcher")
}

// cluster is a test API server with the operator's RBAC installed and the
// manager running as its ServiceAccount.
type cluster struct {
	env   *envtest.Environment
	cfg   *rest.Config
	admin client.Client
	kube  kubernetes.Interface
	dir   string
	// procEnv is added to the environment of the processes started.
	procEnv []string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, hooklinev1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{env: env, cfg: cfg, admin: admin, kube: kube, dir: t.TempDir()}
	ctx := context.Background()
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		t.Fatal(err)
	}
	applyManifests(ctx, t, admin, "config/rbac/*.yaml")
	manager, _ := binaries(t)
	c.run(t, "manager", manager, c.kubeconfig(t, "hookline-manager", operatorNamespace),
		"--leader-elect=false",
		"--operator-namespace="+operatorNamespace,
		"--dispatcher-image=registry.example/hookline:e2e",
		"--health-probe-bind-address="+freeAddr(t),
		"--metrics-bind-address=0",
		// The webhook is tested against the API server in controllers/;
		// here no webhook configuration is installed.
		"--webhook-port=0",
	)
	return c
}

// kubeconfig writes a kubeconfig authenticating as a ServiceAccount's user,
// so the RBAC bound to that account applies.
func (c *cluster) kubeconfig(t *testing.T, sa, ns string) string {
	t.Helper()
	path, err := testenv.ServiceAccountKubeconfig(c.env, c.dir, ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// process is a child process whose output is kept for failed tests.
type process struct {
	name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (c *cluster) run(t *testing.T, name, bin, kubeconfig string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), c.procEnv...)
	p := &process{name: name, cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.logs.String(), 2000))
		}
	})
	return p
}

func (p *process) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s exited with %d after SIGTERM", p.name, code)
		}
	case <-time.After(time.Until(testenv.GiveUpAt(t))):
		t.Errorf("%s still running after SIGTERM", p.name)
		p.kill()
	}
}

func tail(s string, lines int) string {
	b := []byte(s)
	n := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n++
			if n > lines {
				return string(b[i+1:])
			}
		}
	}
	return s
}

// dispatcherProc is a running dispatcher binary.
type dispatcherProc struct {
	*process
	ingest, health, metrics string
}

// startDispatcher runs the dispatcher binary for the WebhookDispatcher
// ns/name as its ServiceAccount, outside any pod.
func (c *cluster) startDispatcher(t *testing.T, ns, name, instance string, queueArgs ...string) *dispatcherProc {
	t.Helper()
	_, bin := binaries(t)
	d := &dispatcherProc{}
	// Port 0: the dispatcher picks free ports and logs them, which avoids
	// racing other tests for ports picked here.
	args := append([]string{
		"--dispatcher-name=" + name,
		"--dispatcher-namespace=" + ns,
		"--instance=" + instance,
		"--ingest-bind-address=127.0.0.1:0",
		"--health-probe-bind-address=127.0.0.1:0",
		"--metrics-bind-address=127.0.0.1:0",
		"--status-interval=1s",
		"--shutdown-grace=5s",
		"--log-level=debug",
	}, queueArgs...)
	d.process = c.run(t, "dispatcher "+instance, bin, c.kubeconfig(t, name+"-dispatcher", ns), args...)
	eventually(t, func() error {
		for _, line := range strings.Split(d.logs.String(), "\n") {
			var entry struct{ Msg, Ingest, Health, Metrics string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "Starting" && entry.Ingest != "" {
				d.ingest, d.health, d.metrics = entry.Ingest, entry.Health, entry.Metrics
				return nil
			}
		}
		select {
		case <-d.done:
			t.Fatalf("the dispatcher exited before listening")
		default:
		}
		return fmt.Errorf("the dispatcher has not logged its addresses yet")
	})
	return d
}

func (d *dispatcherProc) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, func() error {
		select {
		case <-d.done:
			t.Fatalf("dispatcher %s exited before it was ready", d.name)
		default:
		}
		return httpOK("http://" + d.health + "/readyz")
	})
}

// producer is a ServiceAccount allowed to publish in its namespace.
func (c *cluster) producerToken(ctx context.Context, t *testing.T, ns string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "producer", Namespace: ns}}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "publisher", Namespace: ns}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{hooklinev1.GroupVersion.Group}, Resources: []string{"webhookevents"}, Verbs: []string{"create"},
	}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "producer-publishes", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "publisher"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "producer", Namespace: ns}}}
	for _, o := range []client.Object{sa, role, binding} {
		if err := c.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := c.kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "producer", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"hookline"}, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// publish POSTs an event and returns the status code and the decoded body.
func publish(addr, token, ns string, event any) (int, map[string]any, error) {
	body, err := json.Marshal(event)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/namespaces/"+ns+"/events", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, nil
}
