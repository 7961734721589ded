package report

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/test/testenv"
)

// The writer tests run against a real kube-apiserver and etcd with the real
// CRDs. Each test works in a namespace of its own.
var (
	// dyn reaches the API server through the counting transport.
	dyn dynamic.Interface
	// statusPatches counts PATCH requests to status subresources, by path.
	statusPatches = &patchCounter{counts: map[string]int{}}
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	env, cfg, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test API server:", err)
		}
	}()
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/status") {
				if failed := statusPatches.add(r.URL.Path); failed {
					return nil, fmt.Errorf("injected failure of PATCH %s", r.URL.Path)
				}
				defer statusPatches.inFlight.Add(-1)
				statusPatches.noteInFlight(statusPatches.inFlight.Add(1))
			}
			return rt.RoundTrip(r)
		})
	})
	dyn, err = dynamic.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the test client:", err)
		return 1
	}
	return m.Run()
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// patchCounter counts status patches per path and can make the next ones
// for a path fail before they reach the server.
type patchCounter struct {
	mu     sync.Mutex
	counts map[string]int
	fail   map[string]int
	// inFlight counts the patches sent and not answered yet; maxInFlight
	// is the most there were at once since the last resetMaxInFlight.
	inFlight    atomic.Int64
	maxInFlight int64
}

func (c *patchCounter) noteInFlight(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.maxInFlight = max(c.maxInFlight, n)
}

// resetMaxInFlight returns the most patches there were in flight at once
// since the last call, and starts counting again.
func (c *patchCounter) resetMaxInFlight() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.maxInFlight
	c.maxInFlight = 0
	return n
}

func (c *patchCounter) add(path string) (fail bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail[path] > 0 {
		c.fail[path]--
		return true
	}
	c.counts[path]++
	return false
}

func (c *patchCounter) get(ns, name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[statusPath(ns, name)]
}

func (c *patchCounter) failNext(ns, name string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail == nil {
		c.fail = map[string]int{}
	}
	c.fail[statusPath(ns, name)] = n
}

func statusPath(ns, name string) string {
	return fmt.Sprintf("/apis/hookline.dev/v1alpha1/namespaces/%s/webhooksubscriptions/%s/status", ns, name)
}

var namespacesResource = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"generateName": "report-"},
	}}
	created, err := dyn.Resource(namespacesResource).Create(context.Background(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	return created.GetName()
}

func createSubscription(t *testing.T, ns, name string) *hooklinev1.WebhookSubscription {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "hookline.dev/v1alpha1", "kind": "WebhookSubscription",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"url":        "https://billing.example.com/hooks/orders",
			"eventTypes": []any{"order.created", "order.*.paid"},
			"signing":    map[string]any{"secretRef": map[string]any{"name": "orders-signing"}},
		},
	}}
	created, err := dyn.Resource(subscriptionsResource).Namespace(ns).Create(context.Background(), u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating subscription %s/%s: %v", ns, name, err)
	}
	return typed(t, created)
}

func getSubscription(t *testing.T, ns, name string) *hooklinev1.WebhookSubscription {
	t.Helper()
	u, err := dyn.Resource(subscriptionsResource).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting subscription %s/%s: %v", ns, name, err)
	}
	return typed(t, u)
}

func typed(t testing.TB, u *unstructured.Unstructured) *hooklinev1.WebhookSubscription {
	t.Helper()
	var s hooklinev1.WebhookSubscription
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
		t.Fatalf("converting a subscription: %v", err)
	}
	return &s
}

// harness runs one Writer against the test API server with a fake clock.
type harness struct {
	t      *testing.T
	clock  *clocktesting.FakeClock
	writer *Writer

	mu     sync.Mutex
	states map[string]State
	// stale, when set for a subscription, is what Lookup returns instead
	// of reading the server: a cache that has not seen a deletion yet.
	stale map[string]*hooklinev1.WebhookSubscription
	// onSuspended, when set before start, is told what Suspended is.
	onSuspended func(obj *hooklinev1.WebhookSubscription, message string)

	cancel context.CancelFunc
	done   chan error
}

const testInterval = 10 * time.Second

func newHarness(t *testing.T, clk *clocktesting.FakeClock) *harness {
	h := &harness{t: t, clock: clk, states: map[string]State{}, stale: map[string]*hooklinev1.WebhookSubscription{}}
	h.writer = NewWriter(Options{
		Client:   dyn,
		Interval: testInterval,
		Clock:    clk,
		Source:   h,
	})
	return h
}

func (h *harness) setState(ns, name string, s State) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.states[ns+"/"+name] = s
}

// setTotals sets the totals Lookup reports for a subscription, as the
// dispatcher's checkpoints hold them.
func (h *harness) setTotals(ns, name string, t Totals) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.states[ns+"/"+name]
	s.Totals = &t
	h.states[ns+"/"+name] = s
}

func (h *harness) setStale(obj *hooklinev1.WebhookSubscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stale[obj.Namespace+"/"+obj.Name] = obj
}

// The harness is the writer's Source, as the dispatcher is in production.
var _ Source = (*harness)(nil)

func (h *harness) Keys() []Key {
	h.mu.Lock()
	defer h.mu.Unlock()
	var keys []Key
	for k := range h.states {
		ns, name, _ := strings.Cut(k, "/")
		keys = append(keys, Key{Namespace: ns, Name: name})
	}
	return keys
}

// BeforeTick reads nothing: the harness holds every State in memory.
func (h *harness) BeforeTick(context.Context) {}

// Suspended passes the writer's word on to onSuspended.
func (h *harness) Suspended(obj *hooklinev1.WebhookSubscription, message string) {
	if h.onSuspended != nil {
		h.onSuspended(obj, message)
	}
}

// Lookup serves the State set for a subscription with the object read from
// the server, as an informer cache would hold it.
func (h *harness) Lookup(ns, name string) (State, bool) {
	h.mu.Lock()
	s, ok := h.states[ns+"/"+name]
	stale := h.stale[ns+"/"+name]
	h.mu.Unlock()
	if !ok {
		return State{}, false
	}
	if stale != nil {
		s.Object = stale
		return s, true
	}
	u, err := dyn.Resource(subscriptionsResource).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return State{}, false
	}
	if err != nil {
		h.t.Errorf("looking up %s/%s: %v", ns, name, err)
		return State{}, false
	}
	s.Object = typed(h.t, u)
	return s, true
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.writer.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run() = %v, want nil after the context ended", err)
	}
	h.cancel = nil
}

// tick waits until the writer waits for its timer, then moves the clock
// one interval and waits for the tick to end (the timer is set again).
func (h *harness) tick() {
	h.t.Helper()
	eventually(h.t, h.clock.HasWaiters, "the writer to wait for its tick")
	h.clock.Step(testInterval)
	eventually(h.t, h.clock.HasWaiters, "the tick to end")
}

func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	// No wall-clock bound: only the test binary's -timeout ends the wait.
	giveUp := testenv.GiveUpAt(t)
	for !cond() {
		if time.Now().After(giveUp) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var suiteStart = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
