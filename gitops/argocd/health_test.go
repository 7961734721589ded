package argocd

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite argocd-cm.yaml from the health checks")

// kinds are the Hookline kinds with a health check, in the order
// argocd-cm.yaml lists them.
var kinds = []string{"WebhookDispatcher", "WebhookSecret", "WebhookSubscription"}

const configMapPath = "argocd-cm.yaml"

func scriptPath(kind string) string {
	return filepath.Join("resource_customizations", hooklinev1.GroupVersion.Group, kind, "health.lua")
}

// configMapKey is the argocd-cm key under which Argo CD looks for a
// kind's health check.
func configMapKey(kind string) string {
	return "resource.customizations.health." + hooklinev1.GroupVersion.Group + "_" + kind
}

func readScript(t *testing.T, kind string) string {
	t.Helper()
	b, err := os.ReadFile(scriptPath(kind))
	if err != nil {
		t.Fatalf("reading the %s health check: %v", kind, err)
	}
	return string(b)
}

// renderConfigMap is argocd-cm.yaml: each script as a literal block under
// its key, indented and otherwise byte for byte as in its file.
func renderConfigMap(scripts map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString(`# Argo CD health checks for the Hookline kinds. Merge these keys into the
# argocd-cm ConfigMap of your Argo CD installation (see docs/gitops.md).
# Generated from resource_customizations/hookline.dev/*/health.lua: edit
# those and run "go test ./gitops/argocd -run TestConfigMap -update".
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
`)
	for _, kind := range kinds {
		b.WriteString("  " + configMapKey(kind) + ": |\n")
		for _, line := range strings.Split(strings.TrimSuffix(scripts[kind], "\n"), "\n") {
			if line == "" {
				b.WriteString("\n")
				continue
			}
			b.WriteString("    " + line + "\n")
		}
	}
	return b.Bytes()
}

func TestConfigMapUpToDate(t *testing.T) {
	scripts := map[string]string{}
	for _, kind := range kinds {
		scripts[kind] = readScript(t, kind)
	}
	want := renderConfigMap(scripts)
	if *update {
		if err := os.WriteFile(configMapPath, want, 0o644); err != nil {
			t.Fatalf("writing %s: %v", configMapPath, err)
		}
	}
	got, err := os.ReadFile(configMapPath)
	if err != nil {
		t.Fatalf("reading %s: %v", configMapPath, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s does not match the health checks; run: go test ./gitops/argocd -run TestConfigMap -update", configMapPath)
	}
}

// TestConfigMapCarriesScripts reads argocd-cm.yaml as Kubernetes does and
// checks that each key holds its script exactly: the YAML rendering must
// not change a byte of Lua.
func TestConfigMapCarriesScripts(t *testing.T) {
	b, err := os.ReadFile(configMapPath)
	if err != nil {
		t.Fatalf("reading %s: %v", configMapPath, err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		t.Fatalf("parsing %s: %v", configMapPath, err)
	}
	if cm.Kind != "ConfigMap" || cm.Name != "argocd-cm" || cm.Namespace != "argocd" {
		t.Errorf("%s is %s %s/%s, want ConfigMap argocd/argocd-cm", configMapPath, cm.Kind, cm.Namespace, cm.Name)
	}
	var keys []string
	for k := range cm.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var want []string
	for _, kind := range kinds {
		want = append(want, configMapKey(kind))
		if got := cm.Data[configMapKey(kind)]; got != readScript(t, kind) {
			t.Errorf("%s: key %s differs from %s", configMapPath, configMapKey(kind), scriptPath(kind))
		}
	}
	if !slices.Equal(keys, want) {
		t.Errorf("%s keys = %v, want %v", configMapPath, keys, want)
	}
}

// health is what an Argo CD health check returns.
type health struct {
	status, message string
}

// argoHealthStatuses are the statuses Argo CD accepts from a health check;
// it turns any other into Unknown.
var argoHealthStatuses = []string{"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

// runHealthCheck runs script as Argo CD does: a fresh Lua state with only
// the package, base and table libraries, obj set globally, a one-second
// budget, and a table returned.
func runHealthCheck(t *testing.T, script string, obj map[string]any) health {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			t.Fatalf("opening the Lua library %q: %v", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // against a script that loops; far above any run
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(t, l, obj))
	if err := l.DoString(script); err != nil {
		t.Fatalf("running the health check: %v", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("the health check returned a %s, want a table", l.Get(-1).Type())
	}
	field := func(name string) string {
		v, ok := ret.RawGetString(name).(lua.LString)
		if !ok {
			t.Fatalf("hs.%s is a %s, want a string", name, ret.RawGetString(name).Type())
		}
		return string(v)
	}
	return health{status: field("status"), message: field("message")}
}

// toLua converts an object decoded from JSON into Lua values as Argo CD
// hands it to health checks: objects and arrays become tables (arrays
// indexed from 1), numbers become Lua numbers.
func toLua(t *testing.T, l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case map[string]any:
		tbl := l.NewTable()
		for k, e := range v {
			tbl.RawSetString(k, toLua(t, l, e))
		}
		return tbl
	case []any:
		tbl := l.NewTable()
		for _, e := range v {
			tbl.Append(toLua(t, l, e))
		}
		return tbl
	default:
		t.Fatalf("unexpected %T in an object", v)
		return nil
	}
}

// loadFixture reads testdata/<kind>/<name>. It must decode strictly into
// the Hookline type, so a fixture cannot drift from the API it stands for.
func loadFixture(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", kind, name))
	if err != nil {
		t.Fatalf("reading the fixture: %v", err)
	}
	var typed any
	switch kind {
	case "WebhookDispatcher":
		typed = &hooklinev1.WebhookDispatcher{}
	case "WebhookSecret":
		typed = &hooklinev1.WebhookSecret{}
	case "WebhookSubscription":
		typed = &hooklinev1.WebhookSubscription{}
	default:
		t.Fatalf("no type for kind %s", kind)
	}
	if err := yaml.UnmarshalStrict(b, typed); err != nil {
		t.Fatalf("the fixture is not a valid %s: %v", kind, err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("converting the fixture to JSON: %v", err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatalf("decoding the fixture: %v", err)
	}
	if u.GetKind() != kind || u.GetAPIVersion() != hooklinev1.GroupVersion.String() {
		t.Fatalf("the fixture is a %s %s, want %s %s", u.GetAPIVersion(), u.GetKind(), hooklinev1.GroupVersion, kind)
	}
	return u
}

// healthCases give, for each fixture, what the Argo CD health check must
// say and, for comparison, what kstatus (and so Flux and kubectl wait)
// computes from the same object.
var healthCases = []struct {
	kind, fixture string
	want          health
	kstatus       status.Status
}{
	// WebhookSubscription.
	{"WebhookSubscription", "healthy.yaml",
		health{"Healthy", "Valid; events for billing.example.com go through hookline-system/default; the endpoint is healthy"}, status.CurrentStatus},
	// Valid, but not served yet: Ready only once the dispatcher accepts
	// the current generation. The dispatcher's conditions about an older
	// one, a failing endpoint included, do not count.
	{"WebhookSubscription", "progressing-awaiting-dispatcher.yaml",
		health{"Progressing", "Waiting for dispatcher hookline-system/default to accept generation 1"}, status.InProgressStatus},
	{"WebhookSubscription", "progressing-awaiting-dispatcher-stale-endpoint-condition.yaml",
		health{"Progressing", "Waiting for dispatcher hookline-system/default to accept generation 3"}, status.InProgressStatus},
	// kstatus counts an object without status as Current: its generic
	// rules cannot tell a new object from one that has no status at all.
	{"WebhookSubscription", "progressing-new.yaml",
		health{"Progressing", "Waiting for the controller"}, status.CurrentStatus},
	{"WebhookSubscription", "progressing-stale-generation.yaml",
		health{"Progressing", "Waiting for the controller"}, status.InProgressStatus},
	{"WebhookSubscription", "progressing-secret-not-found.yaml",
		health{"Progressing", "WebhookSecret orders-signing, referenced by spec.signing.secretRef, not found"}, status.InProgressStatus},
	{"WebhookSubscription", "progressing-dispatcher-not-ready.yaml",
		health{"Progressing", "dispatcher shop/team is not Ready: 0 of 1 dispatcher instances running"}, status.InProgressStatus},
	{"WebhookSubscription", "degraded-namespace-not-allowed.yaml",
		health{"Degraded", "dispatcher platform/team does not admit subscriptions from namespace shop"}, status.FailedStatus},
	// kstatus has no word for "reconciled but failing": Ready=False alone
	// reads as InProgress.
	{"WebhookSubscription", "degraded-endpoint-failing.yaml",
		health{"Degraded", "endpoint failing: 5 consecutive failures, last: HTTP 503 at 2026-06-01T12:20:41Z"}, status.InProgressStatus},
	{"WebhookSubscription", "degraded-endpoint-gone.yaml",
		health{"Degraded", "The endpoint answered 410 Gone; events are held until the subscription's spec changes or spec.suspend is set and cleared"}, status.FailedStatus},
	// The dispatcher reports the 410 before the controller turns Ready
	// false: kstatus still reads Ready.
	{"WebhookSubscription", "degraded-gone-before-controller.yaml",
		health{"Degraded", "The endpoint answered 410 Gone; events are held until the subscription's spec changes or spec.suspend is set and cleared"}, status.CurrentStatus},
	{"WebhookSubscription", "suspended-by-spec.yaml",
		health{"Suspended", "Suspended by spec.suspend; events are held until it is cleared"}, status.CurrentStatus},

	// WebhookDispatcher.
	{"WebhookDispatcher", "healthy.yaml",
		health{"Healthy", "2 of 2 dispatcher instances running"}, status.CurrentStatus},
	{"WebhookDispatcher", "progressing-new.yaml",
		health{"Progressing", "Waiting for the controller"}, status.CurrentStatus},
	{"WebhookDispatcher", "progressing-replicas.yaml",
		health{"Progressing", "1 of 2 dispatcher instances running, rollout in progress"}, status.InProgressStatus},
	{"WebhookDispatcher", "degraded-object-conflict.yaml",
		health{"Degraded", "StatefulSet platform/team-dispatcher exists and is not this dispatcher's: delete it, or give the dispatcher another name"}, status.FailedStatus},

	// WebhookSecret.
	{"WebhookSecret", "healthy.yaml",
		health{"Healthy", "Signing with key k-3f2a9c1b7e5d4a60 (HMAC-SHA256)"}, status.CurrentStatus},
	{"WebhookSecret", "healthy-rotation-overlap.yaml",
		health{"Healthy", "Signing with key k-91c04e2d5a7b3f18 (Ed25519); previous key k-3f2a9c1b7e5d4a60 signs until 2026-06-02T12:00:03Z"}, status.CurrentStatus},
	{"WebhookSecret", "progressing-stale-generation.yaml",
		health{"Progressing", "Waiting for the controller"}, status.InProgressStatus},
	{"WebhookSecret", "progressing-secret-deleting.yaml",
		health{"Progressing", "Secret orders-signing is being deleted; a new one with a new signing key is created once it is gone"}, status.InProgressStatus},
	{"WebhookSecret", "degraded-secret-conflict.yaml",
		health{"Degraded", "Secret orders-signing exists and is not controlled by this WebhookSecret, so it is left untouched: " +
			"delete or rename that Secret, or recreate this WebhookSecret with another spec.secretName"}, status.FailedStatus},
}

func TestHealthChecks(t *testing.T) {
	for _, tc := range healthCases {
		t.Run(tc.kind+"/"+strings.TrimSuffix(tc.fixture, ".yaml"), func(t *testing.T) {
			obj := loadFixture(t, tc.kind, tc.fixture)
			got := runHealthCheck(t, readScript(t, tc.kind), obj.Object)
			if !slices.Contains(argoHealthStatuses, got.status) {
				t.Fatalf("status %q is not one Argo CD accepts", got.status)
			}
			if got != tc.want {
				t.Errorf("health = %+v, want %+v", got, tc.want)
			}
			// The fixture's name says the state it stands for.
			if state := strings.ToLower(tc.want.status); !strings.HasPrefix(tc.fixture, state) {
				t.Errorf("fixture %s is expected %s: name it %s-...", tc.fixture, tc.want.status, state)
			}
			res, err := status.Compute(obj)
			if err != nil {
				t.Fatalf("kstatus: %v", err)
			}
			if res.Status != tc.kstatus {
				t.Errorf("kstatus = %s (%s), want %s", res.Status, res.Message, tc.kstatus)
			}
		})
	}
}

// TestEveryFixtureChecked fails on a fixture no case uses, and on a kind
// without a case for each state its health check can report.
func TestEveryFixtureChecked(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	states := map[string][]string{}
	for _, tc := range healthCases {
		covered[filepath.Join("testdata", tc.kind, tc.fixture)] = true
		if !slices.Contains(states[tc.kind], tc.want.status) {
			states[tc.kind] = append(states[tc.kind], tc.want.status)
		}
	}
	for _, f := range files {
		if !covered[f] {
			t.Errorf("fixture %s is not checked by any case", f)
		}
	}
	want := map[string][]string{
		"WebhookDispatcher":   {"Healthy", "Progressing", "Degraded"},
		"WebhookSecret":       {"Healthy", "Progressing", "Degraded"},
		"WebhookSubscription": {"Healthy", "Progressing", "Degraded", "Suspended"},
	}
	for kind, ws := range want {
		for _, s := range ws {
			if !slices.Contains(states[kind], s) {
				t.Errorf("no %s fixture is expected %s", kind, s)
			}
		}
	}
}
