package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue/queuetest"
	"github.com/hookline/hookline/test/testenv"
)

// ledger is what a producer learnt about each event id it published.
type ledger struct {
	mu        sync.Mutex
	accepted  map[string]bool // answered 202 at least once
	uncertain map[string]bool // a request was cut off: it may or may not be stored
}

func newLedger() *ledger {
	return &ledger{accepted: map[string]bool{}, uncertain: map[string]bool{}}
}

// produce publishes events "<prefix>-<n>" until stop is closed, to the
// address addr() returns at each attempt. Each id is retried, with the same
// id, until it is answered 202 or refused 20 times, as a careful producer
// would.
func (l *ledger) produce(addr func() string, token, ns, prefix string, stop <-chan struct{}) {
	for n := 0; ; n++ {
		id := fmt.Sprintf("%s-%d", prefix, n)
		typ := "tick.odd"
		if n%2 == 0 {
			typ = "tick.even"
		}
		for try := 0; try < 20; try++ {
			select {
			case <-stop:
				return
			default:
			}
			code, _, err := publish(addr(), token, ns, map[string]any{"id": id, "type": typ, "data": n})
			l.mu.Lock()
			switch {
			case err != nil:
				l.uncertain[id] = true
			case code == http.StatusAccepted:
				l.accepted[id] = true
			}
			l.mu.Unlock()
			if err == nil && code == http.StatusAccepted {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// check says which accepted events a receiver lacks, and which refused
// ones (never accepted, never cut off) it got anyway.
func (l *ledger) check(rcv *receiver, wants func(id string) bool) (missing, unexpected []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := rcv.ids()
	for id := range l.accepted {
		if wants(id) && got[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id := range got {
		if !l.accepted[id] && !l.uncertain[id] {
			unexpected = append(unexpected, id)
		}
	}
	return missing, unexpected
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

func even(id string) bool {
	var n int
	_, _ = fmt.Sscanf(id[strings.LastIndexByte(id, '-')+1:], "%d", &n)
	return n%2 == 0
}

// setupTicks creates namespace ns, a dispatcher of the same name admitting
// it, a WebhookSecret, and two subscriptions: every tick, and even ticks.
func setupTicks(ctx context.Context, t *testing.T, c *cluster, ns string, mutate func(*hooklinev1.WebhookDispatcher)) (all, evens *receiver) {
	t.Helper()
	if err := c.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	d := &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: ns, Namespace: ns},
		Spec: hooklinev1.WebhookDispatcherSpec{
			Egress:                 hooklinev1.EgressPolicy{AllowPlainHTTP: true, AllowedCIDRs: []string{"127.0.0.0/8"}},
			ProducerAuthentication: hooklinev1.ProducerAuthNone,
		},
	}
	if mutate != nil {
		mutate(d)
	}
	all, evens = newReceiver(t, nil), newReceiver(t, nil)
	objs := []client.Object{d, &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Name: "signing", Namespace: ns}}}
	for name, s := range map[string]struct {
		url   string
		types []string
	}{"all": {all.URL, []string{"tick.*"}}, "evens": {evens.URL, []string{"tick.even"}}} {
		objs = append(objs, &hooklinev1.WebhookSubscription{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: hooklinev1.WebhookSubscriptionSpec{
				URL: s.url, EventTypes: s.types,
				DispatcherRef: &hooklinev1.DispatcherReference{Name: ns},
				Signing:       hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "signing"}},
				Delivery: hooklinev1.DeliveryPolicy{Retry: hooklinev1.RetryPolicy{
					InitialBackoff: &metav1.Duration{Duration: 100 * time.Millisecond},
					MaxBackoff:     &metav1.Duration{Duration: time.Second},
				}},
			},
		})
	}
	for _, o := range objs {
		if err := c.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	return all, evens
}

// waitDelivered waits until every accepted event reached the receivers of
// setupTicks, failing at once if a refused one arrives.
func waitDelivered(t *testing.T, l *ledger, all, evens *receiver) {
	t.Helper()
	waitLedger(t, l, map[string]*receiver{"all": all, "evens": evens}, func(name, id string) bool {
		return name != "evens" || even(id)
	})
}

// waitLedger waits until every accepted event that wants says a receiver
// should get has reached it, failing at once if a refused one arrives. The
// test binary's timeout is its only bound.
func waitLedger(t *testing.T, l *ledger, rcvs map[string]*receiver, wants func(name, id string) bool) {
	t.Helper()
	eventually(t, func() error {
		for name, r := range rcvs {
			missing, unexpected := l.check(r, func(id string) bool { return wants(name, id) })
			if len(unexpected) > 0 {
				t.Fatalf("%s received events that were refused: %v", name, unexpected)
			}
			if len(missing) > 0 {
				return fmt.Errorf("%s lacks %d accepted events, e.g. %v", name, len(missing), missing[:min(5, len(missing))])
			}
		}
		return nil
	})
}

func waitAccepted(ctx context.Context, t *testing.T, c *cluster, ns string) {
	t.Helper()
	for _, name := range []string{"all", "evens"} {
		sub := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		eventually(t, func() error { return condition(ctx, c, sub, hooklinev1.ConditionAccepted, metav1.ConditionTrue) })
	}
}

// TestCrashSafety kills the dispatcher with SIGKILL at random moments, a
// dozen times, under a stream of events and restarts it on the same data
// directory: every event answered 202 must reach every matching
// subscription, no event answered with an error may reach any, and once the
// dispatcher has settled each subscription's status.delivery.delivered must
// equal the number of distinct events its receiver acknowledged: progress
// and counts survive the crashes together, never lower, never double.
func TestCrashSafety(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context()
	const ns, kills = "crash", 12
	all, evens := setupTicks(ctx, t, c, ns, nil)
	dataDir := t.TempDir()
	var current atomic.Pointer[dispatcherProc]
	start := func(i int) {
		p := c.startDispatcher(t, ns, ns, fmt.Sprintf("crash-%d", i), "--data-dir="+dataDir, "--producer-authentication=None")
		current.Store(p)
		p.waitReady(t)
	}
	start(0)
	waitAccepted(ctx, t, c, ns)

	l := newLedger()
	stop := make(chan struct{})
	var producers sync.WaitGroup
	for w := range 3 {
		producers.Add(1)
		go func() {
			defer producers.Done()
			l.produce(func() string { return current.Load().ingest }, "", ns, fmt.Sprintf("p%d", w), stop)
		}()
	}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := 1; i <= kills; i++ {
		// From just after a start (before a first checkpoint) to a few
		// seconds of steady delivery.
		time.Sleep(time.Duration(200+rnd.IntN(2800)) * time.Millisecond)
		current.Load().kill()
		t.Logf("killed the dispatcher with SIGKILL (%d events accepted so far)", l.count())
		start(i)
	}
	time.Sleep(time.Second)
	close(stop)
	producers.Wait()
	if l.count() < 20 {
		t.Fatalf("only %d events were accepted: the test proves nothing", l.count())
	}
	waitDelivered(t, l, all, evens)
	for id, n := range evens.ids() {
		if !even(id) {
			t.Errorf("the even subscription got %s (%d times)", id, n)
		}
	}
	rcvs := map[string]*receiver{"all": all, "evens": evens}
	settleExactCounts(ctx, t, c, ns, func() string { return current.Load().ingest }, "tick.even", rcvs)
	t.Logf("%d events accepted across %d crashes; all delivered; %d and %d redelivered; status counts exact",
		l.count(), kills, checkIDsMatchBodies(t, "all", all), checkIDsMatchBodies(t, "evens", evens))
}

// TestExternalQueue runs two dispatcher instances sharing a three-node NATS
// JetStream cluster with streams replicated three times; one NATS node is
// stopped mid-stream and no accepted event is lost.
func TestExternalQueue(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	urls, stopNode := queuetest.StartCluster(t, 3)
	const ns = "external"
	all, evens := setupTicks(ctx, t, c, ns, func(d *hooklinev1.WebhookDispatcher) {
		d.Spec.Replicas = ptr32(2)
		d.Spec.Queue = hooklinev1.QueueSpec{External: &hooklinev1.ExternalQueue{URL: urls[0], StreamReplicas: 3}}
	})
	args := []string{"--queue-url=" + strings.Join(urls, ","), "--stream-replicas=3", "--producer-authentication=None"}
	a := c.startDispatcher(t, ns, ns, "ext-0", args...)
	b := c.startDispatcher(t, ns, ns, "ext-1", args...)
	a.waitReady(t)
	b.waitReady(t)
	waitAccepted(ctx, t, c, ns)

	l := newLedger()
	stop := make(chan struct{})
	var producers sync.WaitGroup
	for w, p := range []*dispatcherProc{a, b} {
		producers.Add(1)
		go func() {
			defer producers.Done()
			l.produce(func() string { return p.ingest }, "", ns, fmt.Sprintf("x%d", w), stop)
		}()
	}
	time.Sleep(2 * time.Second)
	stopNode(2)
	t.Logf("stopped NATS node 2 (%d events accepted so far)", l.count())
	time.Sleep(3 * time.Second)
	close(stop)
	producers.Wait()
	if l.count() < 20 {
		t.Fatalf("only %d events were accepted: the test proves nothing", l.count())
	}
	waitDelivered(t, l, all, evens)
	t.Logf("%d events accepted by two instances on a 3-node cluster, one node stopped; all delivered", l.count())
}

// TestExternalQueueReplicaKilled runs two dispatcher instances sharing a
// three-node NATS JetStream cluster and kills one with SIGKILL mid-stream:
// the survivor takes over its share of the subscriptions, every accepted
// event reaches every matching subscription, every request carries the id
// of the event in its body as webhook-id (so redeliveries keep theirs), and
// once settled the status counts equal what the receivers acknowledged.
func TestExternalQueueReplicaKilled(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context()
	urls, _ := queuetest.StartCluster(t, 3)
	const ns = "takeover"
	all, evens := setupTicks(ctx, t, c, ns, func(d *hooklinev1.WebhookDispatcher) {
		d.Spec.Replicas = ptr32(2)
		d.Spec.Queue = hooklinev1.QueueSpec{External: &hooklinev1.ExternalQueue{URL: urls[0], StreamReplicas: 3}}
	})
	// More subscriptions, so that however they are shared out the killed
	// instance almost surely serves some.
	rcvs := map[string]*receiver{"all": all, "evens": evens}
	for i := range 4 {
		name := fmt.Sprintf("copy-%d", i)
		rcvs[name] = newReceiver(t, nil)
		createTickSubscription(ctx, t, c, ns, name, rcvs[name].URL, "tick.*")
	}
	args := []string{"--queue-url=" + strings.Join(urls, ","), "--stream-replicas=3", "--producer-authentication=None"}
	a := c.startDispatcher(t, ns, ns, "takeover-0", args...)
	b := c.startDispatcher(t, ns, ns, "takeover-1", args...)
	a.waitReady(t)
	b.waitReady(t)
	for name := range rcvs {
		sub := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		eventually(t, func() error { return condition(ctx, c, sub, hooklinev1.ConditionAccepted, metav1.ConditionTrue) })
	}

	l := newLedger()
	stop := make(chan struct{})
	var aDead atomic.Bool
	var producers sync.WaitGroup
	for w := range 2 {
		producers.Add(1)
		go func() {
			defer producers.Done()
			l.produce(func() string {
				if w == 0 && !aDead.Load() {
					return a.ingest
				}
				return b.ingest
			}, "", ns, fmt.Sprintf("k%d", w), stop)
		}()
	}
	time.Sleep(3 * time.Second)
	delivered, err := httpGet("http://" + a.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	a.kill()
	aDead.Store(true)
	t.Logf("killed instance takeover-0 with SIGKILL (%d events accepted so far); its delivery counters then:\n%s",
		l.count(), grepLines(delivered, `hookline_deliveries_total{`))
	time.Sleep(4 * time.Second)
	close(stop)
	producers.Wait()
	if l.count() < 20 {
		t.Fatalf("only %d events were accepted: the test proves nothing", l.count())
	}
	waitLedger(t, l, rcvs, func(name, id string) bool { return name != "evens" || even(id) })
	redelivered := 0
	for name, r := range rcvs {
		redelivered += checkIDsMatchBodies(t, name, r)
	}
	settleExactCounts(ctx, t, c, ns, func() string { return b.ingest }, "tick.even", rcvs)
	t.Logf("%d events accepted by two instances, one killed; all delivered to all %d subscriptions, %d event deliveries repeated with their webhook-id; status counts exact",
		l.count(), len(rcvs), redelivered)
}

// createTickSubscription adds a subscription to the dispatcher of
// setupTicks in ns.
func createTickSubscription(ctx context.Context, t *testing.T, c *cluster, ns, name, url string, types ...string) {
	t.Helper()
	sub := &hooklinev1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: hooklinev1.WebhookSubscriptionSpec{
			URL: url, EventTypes: types,
			DispatcherRef: &hooklinev1.DispatcherReference{Name: ns},
			Signing:       hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "signing"}},
			Delivery: hooklinev1.DeliveryPolicy{Retry: hooklinev1.RetryPolicy{
				InitialBackoff: &metav1.Duration{Duration: 100 * time.Millisecond},
				MaxBackoff:     &metav1.Duration{Duration: time.Second},
			}},
		},
	}
	if err := c.admin.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
}

func ptr32(v int32) *int32 { return &v }
