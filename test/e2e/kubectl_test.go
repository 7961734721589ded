package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/test/testenv"
)

var (
	pluginOnce sync.Once
	pluginPath string
	pluginErr  error
)

// pluginBinary builds cmd/kubectl-hookline once per test run.
func pluginBinary(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hookline-e2e-plugin-")
		if err != nil {
			pluginErr = err
			return
		}
		pluginPath = filepath.Join(dir, "kubectl-hookline")
		cmd := exec.Command("go", "build", "-o", pluginPath, "./cmd/kubectl-hookline")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			pluginErr = fmt.Errorf("building kubectl-hookline: %v\n%s", err, out)
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	return pluginPath
}

// pluginRun is the outcome of one run of the plugin binary.
type pluginRun struct {
	stdout, stderr string
	code           int
}

// errorLine checks the exit code and that stderr is one "error: " line
// holding every fragment.
func (r pluginRun) errorLine(t *testing.T, code int, fragments ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d; stdout %q, stderr %q", r.code, code, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "error: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr %q is not one line starting with \"error: \"", r.stderr)
	}
	for _, f := range fragments {
		if !strings.Contains(r.stderr, f) {
			t.Errorf("stderr %q lacks %q", r.stderr, f)
		}
	}
}

func (r pluginRun) ok(t *testing.T) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit code %d; stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// captured records the raw HTTP text of every request a receiver gets, by
// webhook-id, as someone debugging a receiver would save it.
type captured struct {
	mu  sync.Mutex
	raw map[string][]byte
}

func (c *captured) wrap(record http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := httputil.DumpRequest(r, true)
		if err == nil {
			c.mu.Lock()
			c.raw[r.Header.Get("webhook-id")] = raw
			c.mu.Unlock()
		}
		record.ServeHTTP(w, r)
	})
}

func (c *captured) get(id string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.raw[id]
}

// TestKubectlPlugin runs the built kubectl-hookline against the test API
// server, the built manager and a dispatcher with its embedded queue,
// delivering to real HTTP receivers.
func TestKubectlPlugin(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	const ns = "shop"
	if err := c.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	d := &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: operatorNamespace},
		Spec: hooklinev1.WebhookDispatcherSpec{
			AllowedNamespaces: hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromAll},
			Egress:            hooklinev1.EgressPolicy{AllowPlainHTTP: true, AllowedCIDRs: []string{"127.0.0.0/8"}},
		},
	}
	ws := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Name: "signing", Namespace: ns}}
	for _, o := range []client.Object{d, ws} {
		if err := c.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	plugin := pluginBinary(t)
	waitFor(t, 30*time.Second, func() error { return ready(ctx, c.admin, ws) })
	disp := c.startDispatcher(t, operatorNamespace, "default", "plugin-0", "--data-dir="+t.TempDir())
	disp.waitReady(t)
	waitFor(t, 30*time.Second, func() error { return ready(ctx, c.admin, d) })

	// The plugin runs as a cluster admin whose kubeconfig holds a client
	// certificate and no bearer token, as envtest and many clusters do.
	adminUser, err := c.env.AddUser(envtest.User{Name: "plugin-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kcData, err := adminUser.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(c.dir, "plugin-admin.kubeconfig")
	if err := os.WriteFile(kubeconfig, kcData, 0o600); err != nil {
		t.Fatal(err)
	}
	writeToken := func(name, token string) string {
		path := filepath.Join(c.dir, name+".token")
		if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	producerFile := writeToken("producer", c.producerToken(ctx, t, ns))
	kubectl := func(t *testing.T, stdin string, args ...string) pluginRun {
		t.Helper()
		cmd := exec.CommandContext(ctx, plugin, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG=")
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if exit, ok := err.(*exec.ExitError); ok {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("running kubectl-hookline %v: %v", args, err)
		}
		return pluginRun{stdout: out.String(), stderr: errOut.String(), code: code}
	}
	ingest := "--ingest-url=http://" + disp.ingest

	subscribe := func(name, url, eventType string, maxAttempts int32) *hooklinev1.WebhookSubscription {
		sub := &hooklinev1.WebhookSubscription{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: hooklinev1.WebhookSubscriptionSpec{
				URL:           url,
				EventTypes:    []string{eventType},
				DispatcherRef: &hooklinev1.DispatcherReference{Name: "default", Namespace: operatorNamespace},
				Signing:       hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "signing"}},
				Delivery:      hooklinev1.DeliveryPolicy{Retry: hooklinev1.RetryPolicy{MaxAttempts: maxAttempts}},
			},
		}
		if err := c.admin.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		return sub
	}
	capture := &captured{raw: map[string][]byte{}}
	orders := newWrappedReceiver(t, capture.wrap)
	broken := newReceiver(t, func(w http.ResponseWriter, _ int) { w.WriteHeader(http.StatusInternalServerError) })
	var billingFails sync.Mutex
	billingFailing := true
	billing := newReceiver(t, func(w http.ResponseWriter, _ int) {
		billingFails.Lock()
		defer billingFails.Unlock()
		if billingFailing {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	subs := []*hooklinev1.WebhookSubscription{
		subscribe("orders", orders.URL+"/hooks/orders", "order.*", 3),
		subscribe("broken", broken.URL+"/", "broken.*", 1),
		subscribe("billing", billing.URL+"/", "invoice.*", 1),
	}
	for _, sub := range subs {
		waitFor(t, 30*time.Second, func() error { return condition(ctx, c, sub, hooklinev1.ConditionAccepted, metav1.ConditionTrue) })
	}
	if err := c.admin.Get(ctx, client.ObjectKeyFromObject(ws), ws); err != nil {
		t.Fatal(err)
	}
	firstKey := ws.Status.CurrentKeyID

	t.Run("every command's help has an example", func(t *testing.T) {
		for _, command := range []string{"", "send", "status", "rotate", "replay", "verify", "version"} {
			r := kubectl(t, "", strings.Fields(command+" --help")...)
			if r.code != 0 || !strings.Contains(r.stdout, "Example") {
				t.Errorf("kubectl hookline %s --help: exit %d, no example:\n%s", command, r.code, r.stdout)
			}
		}
	})

	t.Run("version", func(t *testing.T) {
		r := kubectl(t, "", "version")
		r.ok(t)
		if !regexp.MustCompile(`(?m)^Client Version: dev\nServer Version: v1\.\d+\.\d+, Hookline API hookline\.dev/v1alpha1 served\n$`).MatchString(r.stdout) {
			t.Errorf("version printed %q", r.stdout)
		}
	})

	t.Run("send publishes", func(t *testing.T) {
		r := kubectl(t, "", "send", "-n", ns, ingest, "--token-file", producerFile, "--type", "order.created", "--id", "order-1042", "--data", `{"total":42}`)
		r.ok(t)
		if r.stdout != "accepted order-1042\n" {
			t.Errorf("stdout %q", r.stdout)
		}
		waitFor(t, 30*time.Second, func() error {
			if orders.ids()["order-1042"] == 0 {
				return fmt.Errorf("order-1042 not delivered yet")
			}
			return nil
		})
		var body struct {
			Type string
			Data map[string]int
		}
		if err := json.Unmarshal(orders.deliveries()[0].Body, &body); err != nil || body.Type != "order.created" || body.Data["total"] != 42 {
			t.Errorf("delivered %s (%v)", orders.deliveries()[0].Body, err)
		}
		r = kubectl(t, "", "send", "-n", ns, ingest, "--token-file", producerFile, "--type", "order.created", "--id", "order-1042", "--data", `{"total":42}`)
		r.ok(t)
		if r.stdout != "accepted order-1042 (duplicate)\n" {
			t.Errorf("republishing: stdout %q", r.stdout)
		}

		// A token requested for a ServiceAccount with the admin's
		// kubeconfig; the dispatcher generates the id.
		r = kubectl(t, "", "send", "-n", ns, ingest, "--service-account", "producer", "--type", "order.paid")
		r.ok(t)
		if !regexp.MustCompile(`^accepted evt_[0-9a-f]{32}\n$`).MatchString(r.stdout) {
			t.Errorf("with --service-account: stdout %q", r.stdout)
		}

		kubectl(t, "", "send", "-n", ns, ingest, "--token-file", producerFile, "--type", "order.created", "--data", "{total: 42}").
			errorLine(t, 2, "--data is not valid JSON")
		kubectl(t, "", "send", "-n", ns, ingest, "--type", "order.created").
			errorLine(t, 1, "no credentials for http://", "--token-file", "--service-account", "only sent through a port-forward")
		// Without --ingest-url the dispatcher's pods are looked up to
		// port-forward to; the test API server runs none.
		kubectl(t, "", "send", "-n", ns, "--token-file", producerFile, "--type", "order.created").
			errorLine(t, 1, "no Ready pod of webhookdispatcher hookline-system/default", "or pass --ingest-url")
		kubectl(t, "", "send", "-n", ns, "--token-file", producerFile, "--type", "order.created", "--dispatcher", "hookline-system/nope").
			errorLine(t, 1, "webhookdispatcher hookline-system/nope not found")
	})

	t.Run("send --to makes a test delivery", func(t *testing.T) {
		r := kubectl(t, "", "send", "-n", ns, ingest, "--token-file", producerFile, "--to", "orders")
		r.ok(t)
		m := regexp.MustCompile(`^delivered (test_[0-9a-f]+) to shop/orders: HTTP 204 in \d+ms, signed with the current key (k-[0-9a-f]{16})\n$`).FindStringSubmatch(r.stdout)
		if m == nil || m[2] != firstKey {
			t.Fatalf("stdout %q, want a success naming the current key %s", r.stdout, firstKey)
		}
		if orders.ids()[m[1]] != 1 {
			t.Errorf("the receiver did not get the test delivery %s: %v", m[1], orders.ids())
		}

		r = kubectl(t, "", "send", "-n", ns, ingest, "--token-file", producerFile, "--to", "broken")
		if r.code != 3 || !regexp.MustCompile(`^failed: HTTPStatus 500 after \d+ms`).MatchString(r.stdout) {
			t.Errorf("to a failing endpoint: exit %d, stdout %q, stderr %q; want 3 and the class", r.code, r.stdout, r.stderr)
		}
		kubectl(t, "", "send", "-n", ns, ingest, "--token-file", producerFile, "--to", "missing").
			errorLine(t, 1, "subscription shop/missing is not served by")
	})

	t.Run("status", func(t *testing.T) {
		for i := range 3 {
			kubectl(t, "", "send", "-n", ns, ingest, "--token-file", producerFile, "--type", "broken.thing", "--data", strconv.Itoa(i)).ok(t)
		}
		brokenSub := subs[1]
		waitFor(t, 60*time.Second, func() error {
			if err := condition(ctx, c, brokenSub, hooklinev1.ConditionEndpointHealthy, metav1.ConditionFalse); err != nil {
				return err
			}
			if st := brokenSub.Status.Delivery; st == nil || st.DeadLettered != 3 {
				return fmt.Errorf("delivery status %+v", st)
			}
			return ready(ctx, c.admin, subs[0])
		})
		waitFor(t, 30*time.Second, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(subs[0]), subs[0]); err != nil {
				return err
			}
			if st := subs[0].Status.Delivery; st == nil || st.LastSuccessTime == nil {
				return fmt.Errorf("orders has no success in status yet: %+v", st)
			}
			return nil
		})

		r := kubectl(t, "", "status", "-n", ns)
		r.ok(t)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if len(lines) != 4 || !regexp.MustCompile(`^NAME\s+READY\s+HEALTHY\s+LAST SUCCESS\s+LAST FAILURE\s+REASON\s+BACKLOG\s+DEAD-LETTERED\s+REPLAYABLE\s+SUSPENDED$`).MatchString(lines[0]) {
			t.Fatalf("table:\n%s", r.stdout)
		}
		wantRows := map[string]*regexp.Regexp{
			"orders": regexp.MustCompile(`^orders\s+True\s+True\s+\d+[sm]\s+never\s+Succeeded\s+0\s+0\s+0\s+false$`),
			"broken": regexp.MustCompile(`^broken\s+False\s+False\s+never\s+\d+[sm] \(HTTPStatus 500\)\s+EndpointUnhealthy\s+0\s+3\s+3\s+false$`),
		}
		for _, line := range lines[1:] {
			name := strings.Fields(line)[0]
			if re := wantRows[name]; re != nil && !re.MatchString(line) {
				t.Errorf("row %q does not match %s", line, re)
			}
			delete(wantRows, name)
		}
		if len(wantRows) != 0 {
			t.Errorf("rows missing from the table:\n%s", r.stdout)
		}

		r = kubectl(t, "", "status", "broken", "-n", ns, "-o", "json")
		r.ok(t)
		var list struct {
			Items []map[string]any `json:"items"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Items) != 1 {
			t.Fatalf("-o json printed %q: %v", r.stdout, err)
		}
		row := list.Items[0]
		var keys []string
		for k := range row {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		wantKeys := []string{"backlog", "deadLettered", "delivered", "dispatcher", "failed", "healthy", "lastFailure", "lastSuccessTime", "message", "name", "namespace", "ready", "reason", "replayable", "suspended"}
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("row fields %v, want %v", keys, wantKeys)
		}
		failure, _ := row["lastFailure"].(map[string]any)
		if row["namespace"] != ns || row["name"] != "broken" || row["ready"] != "False" || row["healthy"] != "False" ||
			row["reason"] != hooklinev1.ReasonEndpointUnhealthy || row["deadLettered"] != float64(3) || row["replayable"] != float64(3) || row["lastSuccessTime"] != nil ||
			row["dispatcher"] != operatorNamespace+"/default" || failure["class"] != "HTTPStatus" || failure["statusCode"] != float64(500) {
			t.Errorf("row %v", row)
		}

		r = kubectl(t, "", "status", "-A")
		r.ok(t)
		if !strings.HasPrefix(r.stdout, "NAMESPACE ") || !regexp.MustCompile(`(?m)^shop\s+billing\s`).MatchString(r.stdout) {
			t.Errorf("status -A:\n%s", r.stdout)
		}
		kubectl(t, "", "status", "nope", "-n", ns).
			errorLine(t, 1, "subscription shop/nope not found; list them with kubectl hookline status -n shop")
	})

	t.Run("verify", func(t *testing.T) {
		raw := capture.get("order-1042")
		if raw == nil {
			t.Fatal("no capture of order-1042")
		}
		file := filepath.Join(t.TempDir(), "order-1042.http")
		if err := os.WriteFile(file, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		r := kubectl(t, "", "verify", "-n", ns, "--secret", "signing", "-f", file, "--tolerance", "1h")
		r.ok(t)
		if !regexp.MustCompile(`^valid: signed by ` + firstKey + ` \(webhook-id order-1042, \d+[sm]\S* old\)\n$`).MatchString(r.stdout) {
			t.Errorf("stdout %q", r.stdout)
		}

		tampered := bytes.Replace(raw, []byte(`"total":42`), []byte(`"total":43`), 1)
		r = kubectl(t, string(tampered), "verify", "-n", ns, "--secret", "signing", "--tolerance", "1h")
		if r.code != 3 || r.stdout != "invalid: no signature matches the keys given (tried "+firstKey+")\n" {
			t.Errorf("tampered: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}

		secret := &corev1.Secret{}
		if err := c.admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "signing"}, secret); err != nil {
			t.Fatal(err)
		}
		ts, err := strconv.ParseInt(regexp.MustCompile(`(?i)webhook-timestamp: (\d+)`).FindStringSubmatch(string(raw))[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		later := time.Unix(ts, 0).Add(10 * time.Minute).UTC().Format(time.RFC3339)
		r = kubectl(t, string(raw), "verify", "--key", string(secret.Data[hooklinev1.SecretKeySigningKey]), "--now", later)
		if r.code != 3 || r.stdout != "invalid: timestamp 10m too old (tolerance 5m)\n" {
			t.Errorf("10 minutes later: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		r = kubectl(t, string(raw), "verify", "--key", string(secret.Data[hooklinev1.SecretKeySigningKey]), "--now", time.Unix(ts+3, 0).UTC().Format(time.RFC3339))
		if r.code != 0 || r.stdout != "valid: signed by "+firstKey+" (webhook-id order-1042, 3s old)\n" {
			t.Errorf("with the key: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("rotate", func(t *testing.T) {
		r := kubectl(t, "", "rotate", "signing", "-n", ns)
		r.ok(t)
		if err := c.admin.Get(ctx, client.ObjectKeyFromObject(ws), ws); err != nil {
			t.Fatal(err)
		}
		newKey := ws.Status.CurrentKeyID
		var expires string
		for _, k := range ws.Status.Keys {
			if k.ID == firstKey && k.ExpiresAt != nil {
				expires = k.ExpiresAt.UTC().Format(time.RFC3339)
			}
		}
		want := fmt.Sprintf("rotated shop/signing: %s → %s (the old key signs too until %s)\n", firstKey, newKey, expires)
		if newKey == firstKey || expires == "" || r.stdout != want {
			t.Errorf("stdout %q, want %q", r.stdout, want)
		}
		if ws.Annotations[hooklinev1.RotateAnnotation] != ws.Status.LastHandledRotateRequest || ws.Status.LastHandledRotateRequest == "" {
			t.Errorf("annotation %q, last handled %q", ws.Annotations[hooklinev1.RotateAnnotation], ws.Status.LastHandledRotateRequest)
		}
		kubectl(t, "", "rotate", "nope", "-n", ns).errorLine(t, 1, "webhooksecret shop/nope not found")
	})

	t.Run("replay", func(t *testing.T) {
		var ids []string
		for i := range 2 {
			r := kubectl(t, "", "send", "-n", ns, ingest, "--token-file", producerFile, "--type", "invoice.paid", "--data", strconv.Itoa(i))
			r.ok(t)
			ids = append(ids, strings.TrimSpace(strings.TrimPrefix(r.stdout, "accepted ")))
		}
		billingSub := subs[2]
		waitFor(t, 60*time.Second, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(billingSub), billingSub); err != nil {
				return err
			}
			if st := billingSub.Status.Delivery; st == nil || st.DeadLettered != 2 {
				return fmt.Errorf("delivery status %+v, want 2 dead-lettered", st)
			}
			return nil
		})
		billingFails.Lock()
		billingFailing = false
		billingFails.Unlock()

		kubectl(t, "", "replay", "billing", "-n", ns, "--since", "1h", ingest, "--token-file", producerFile).
			errorLine(t, 1, "HTTP 403", "update on webhooksubscriptions.hookline.dev is required")

		operatorFile := writeToken("replayer", c.roleToken(ctx, t, ns, "replayer", rbacv1.PolicyRule{
			APIGroups: []string{hooklinev1.GroupVersion.Group}, Resources: []string{"webhooksubscriptions"}, Verbs: []string{"update"}}))
		r := kubectl(t, "", "replay", "billing", "-n", ns, "--since", "1h", ingest, "--token-file", operatorFile, "--timeout", "90s")
		r.ok(t)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		// Failed attempts may still reach status after the replay began,
		// so only deliveries are counted exactly.
		if lines[0] != "replayed 2 dead-lettered deliveries of shop/billing" ||
			!regexp.MustCompile(`^done: backlog 0, delivered \+2, failed \+\d+, dead-lettered again \+0$`).MatchString(lines[len(lines)-1]) {
			t.Errorf("stdout:\n%s", r.stdout)
		}
		for _, l := range lines[1 : len(lines)-1] {
			if !regexp.MustCompile(`^waiting: backlog \d+, delivered \+\d+, failed \+\d+, dead-lettered again \+\d+$`).MatchString(l) {
				t.Errorf("progress line %q", l)
			}
		}
		for _, id := range ids {
			if n := billing.ids()[id]; n != 2 {
				t.Errorf("webhook-id %s received %d times, want twice (failed, then replayed): %v", id, n, billing.ids())
			}
		}
	})
}
