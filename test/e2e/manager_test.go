// Package e2e runs the built binaries against a real API server, with the
// permissions the install manifests grant them and nothing more.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/report"
	"github.com/hookline/hookline/test/testenv"
)

const operatorNamespace = "hookline-system"

// TestManagerWithInstalledRBAC builds cmd/manager and runs it as the
// hookline-manager ServiceAccount, holding exactly the permissions of
// config/rbac (the generated ClusterRole included). It must serve its
// probes and metrics, win leader election, and bring a dispatcher, secrets
// and a subscription in another namespace to Ready, which needs every
// permission the controllers use (creating Roles that grant Secrets by name
// and binding the dispatcher ClusterRole among them).
func TestManagerWithInstalledRBAC(t *testing.T) {
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := testenv.Context(t)
	defer cancel()

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
	for _, name := range []string{operatorNamespace, "team"} {
		if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	applyManifests(ctx, t, admin, "config/rbac/*.yaml")

	// The API server authenticates this client certificate as the
	// ServiceAccount's user name, so the bindings of config/rbac apply.
	user, err := env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + operatorNamespace + ":hookline-manager",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNamespace},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the manager: %v\n%s", err, out)
	}
	probeAddr, metricsAddr := freeAddr(t), freeAddr(t)
	var logs bytes.Buffer
	mgr := exec.Command(bin,
		"--kubeconfig="+kubeconfigPath,
		"--leader-elect",
		"--operator-namespace="+operatorNamespace,
		"--dispatcher-image=registry.example/hookline:e2e",
		"--health-probe-bind-address="+probeAddr,
		"--metrics-bind-address="+metricsAddr,
		"--metrics-secure",
		"--webhook-port=0",
	)
	mgr.Stdout, mgr.Stderr = &logs, &logs
	if err := mgr.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- mgr.Wait() }()
	t.Cleanup(func() {
		if mgr.ProcessState == nil {
			_ = mgr.Process.Kill()
		}
		if t.Failed() {
			t.Logf("manager output:\n%s", logs.String())
		}
	})

	waitFor(t, 60*time.Second, func() error { return httpOK("http://" + probeAddr + "/readyz") })
	if err := httpOK("http://" + probeAddr + "/healthz"); err != nil {
		t.Errorf("healthz: %v", err)
	}
	waitFor(t, 30*time.Second, func() error {
		lease := &coordinationv1.Lease{}
		if err := admin.Get(ctx, types.NamespacedName{Namespace: operatorNamespace, Name: "hookline-manager.hookline.dev"}, lease); err != nil {
			return err
		}
		if ptr.Deref(lease.Spec.HolderIdentity, "") == "" {
			return errors.New("the leader election lease has no holder")
		}
		return nil
	})

	dispatcher := &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: operatorNamespace},
		Spec:       hooklinev1.WebhookDispatcherSpec{AllowedNamespaces: hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromAll}},
	}
	secret := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Name: "signing", Namespace: "team"}}
	sub := &hooklinev1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "team"},
		Spec: hooklinev1.WebhookSubscriptionSpec{
			URL:        "https://receiver.example.com/hooks",
			EventTypes: []string{"order.>"},
			Signing:    hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "signing"}},
		},
	}
	for _, obj := range []client.Object{dispatcher, secret, sub} {
		if err := admin.Create(ctx, obj); err != nil {
			t.Fatalf("creating %s: %v", obj.GetName(), err)
		}
	}

	// The test server runs no pods: announce the dispatcher's one instance
	// with the Lease a running dispatcher keeps renewed, which is what the
	// manager counts (reading Leases with its installed RBAC).
	waitFor(t, 30*time.Second, func() error {
		return admin.Get(ctx, types.NamespacedName{Namespace: operatorNamespace, Name: "default-dispatcher"}, &appsv1.StatefulSet{})
	})
	renewed := metav1.NewMicroTime(time.Now())
	if err := admin.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "default-instance-default-dispatcher-0", Labels: map[string]string{
			hooklinev1.LabelDispatcher: "default", hooklinev1.LabelLeaseRole: hooklinev1.LeaseRoleInstance,
		}},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To("default-dispatcher-0"),
			LeaseDurationSeconds: ptr.To[int32](300),
			AcquireTime:          &renewed,
			RenewTime:            &renewed,
		},
	}); err != nil {
		t.Fatalf("creating the dispatcher's instance Lease: %v", err)
	}

	for _, obj := range []client.Object{dispatcher, secret} {
		waitFor(t, 30*time.Second, func() error { return ready(ctx, admin, obj) })
	}
	// A valid subscription is not Ready until its dispatcher has accepted
	// this generation: until then an event published for it may not reach
	// it. No dispatcher process runs here, so write its Accepted condition
	// as a dispatcher does, under its field manager.
	waitFor(t, 30*time.Second, func() error {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
			return err
		}
		c := meta.FindStatusCondition(sub.Status.Conditions, hooklinev1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != hooklinev1.ReasonAwaitingDispatcher || c.ObservedGeneration != sub.Generation {
			return fmt.Errorf("want Ready=False %s before the dispatcher accepts, got %+v", hooklinev1.ReasonAwaitingDispatcher, c)
		}
		return nil
	})
	accepted := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": hooklinev1.GroupVersion.String(),
		"kind":       "WebhookSubscription",
		"metadata":   map[string]any{"name": sub.Name, "namespace": sub.Namespace},
		"status": map[string]any{"conditions": []any{map[string]any{
			"type": hooklinev1.ConditionAccepted, "status": "True", "reason": hooklinev1.ReasonAccepted,
			"message": "The dispatcher delivers the events this subscription selects", "observedGeneration": sub.Generation,
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}}},
	}}
	if err := admin.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(accepted),
		client.FieldOwner(report.DefaultFieldManager), client.ForceOwnership); err != nil {
		t.Fatalf("accepting the subscription as its dispatcher: %v", err)
	}
	waitFor(t, 30*time.Second, func() error { return ready(ctx, admin, sub) })

	// Least privilege for the dispatcher: its ServiceAccount may read the
	// signing Secret of the subscription's namespace by name only.
	waitFor(t, 30*time.Second, func() error {
		var roles rbacv1.RoleList
		if err := admin.List(ctx, &roles, client.InNamespace("team")); err != nil {
			return err
		}
		for _, r := range roles.Items {
			for _, rule := range r.Rules {
				if slices.Contains(rule.Resources, "secrets") && slices.Contains(rule.ResourceNames, "signing") {
					return nil
				}
			}
		}
		return fmt.Errorf("no Role in namespace team grants the dispatcher the Secret \"signing\" by name; roles: %d", len(roles.Items))
	})

	// Metrics are served over HTTPS to callers allowed to get /metrics,
	// such as a scraper bound to hookline-metrics-reader.
	if code, _ := scrape(t, metricsAddr, "", http.StatusUnauthorized); code != http.StatusUnauthorized {
		t.Errorf("metrics without a token answered %d, want 401", code)
	}
	code, metrics := scrape(t, metricsAddr, scraperToken(ctx, t, cfg, admin, "hookline-metrics-reader"), http.StatusOK)
	if code != http.StatusOK {
		t.Fatalf("metrics with the scraper's token answered %d: %s", code, metrics)
	}
	if code, _ := scrape(t, metricsAddr, scraperToken(ctx, t, cfg, admin, ""), http.StatusForbidden); code != http.StatusForbidden {
		t.Errorf("metrics with a token not allowed /metrics answered %d, want 403", code)
	}
	for _, want := range []string{`controller_runtime_reconcile_total{controller="webhooksecret"`, `controller_runtime_reconcile_total{controller="webhooksubscription"`, `controller_runtime_reconcile_total{controller="webhookdispatcher"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// A rolling update sends SIGTERM: the manager must stop cleanly.
	if err := mgr.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("manager exited with %v after SIGTERM", err)
		}
	case <-time.After(time.Until(testenv.GiveUpAt(t))):
		t.Errorf("manager still running after SIGTERM")
	}
	if strings.Contains(logs.String(), "forbidden") {
		t.Errorf("the manager was refused a request with the installed RBAC:\n%s", grepLines(logs.String(), "forbidden"))
	}
}

// ready reports nil once obj has Ready=True for its current generation.
func ready(ctx context.Context, c client.Client, obj client.Object) error {
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return err
	}
	cond := meta.FindStatusCondition(obj.(interface{ GetConditions() []metav1.Condition }).GetConditions(), hooklinev1.ConditionReady)
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != obj.GetGeneration() {
		return fmt.Errorf("%T %s is not Ready: %+v", obj, obj.GetName(), cond)
	}
	return nil
}

func applyManifests(ctx context.Context, t *testing.T, c client.Client, pattern string) {
	t.Helper()
	objs, err := testenv.ReadManifests(pattern)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("e2e")); err != nil {
			t.Fatalf("applying %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

func waitFor(t *testing.T, expected time.Duration, check func() error) {
	t.Helper()
	start := time.Now()
	giveUp := testenv.GiveUpAt(t)
	logged := false
	for {
		err := check()
		if err == nil {
			return
		}
		if !logged && time.Since(start) > expected {
			t.Logf("still waiting after %s: %v", expected, err)
			logged = true
		}
		if time.Now().After(giveUp) {
			t.Fatalf("not met after %s: %v", time.Since(start).Round(time.Second), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scraperToken returns a ServiceAccount token, for an account bound to
// clusterRole unless that is empty.
func scraperToken(ctx context.Context, t *testing.T, cfg *rest.Config, admin client.Client, clusterRole string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{GenerateName: "scraper-", Namespace: operatorNamespace}}
	if err := admin.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if clusterRole != "" {
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: sa.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: operatorNamespace}},
		}
		if err := admin.Create(ctx, binding); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(operatorNamespace).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token: %v", err)
	}
	return tr.Status.Token
}

// scrape GETs the metrics over HTTPS with token (none if empty), polling
// briefly for the answer want, since a new binding takes a moment to apply
// and the manager caches authorisation decisions.
func scrape(t *testing.T, addr, token string, want int) (int, string) {
	t.Helper()
	// The manager serves metrics with a self-signed certificate here; a
	// cluster gives it a real one.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test against a self-signed local server
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	var code int
	var body []byte
	for range 50 {
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("scraping metrics: %v", err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		code = resp.StatusCode
		if code == want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return code, string(body)
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body), nil
}

func httpOK(url string) error {
	_, err := httpGet(url)
	return err
}

func grepLines(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
