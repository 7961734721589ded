package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// deadlineMargin is how long before the test binary's timeout eventually
// gives up, so that a failure names what was awaited and the processes'
// logs are still printed.
const deadlineMargin = 30 * time.Second

// eventually polls check until it returns nil. It has no bound of its own:
// the test binary's timeout is the guard, so a slow or busy machine never
// fails a test; shortly before that timeout it fails with check's last
// error.
func eventually(t *testing.T, check func() error) {
	t.Helper()
	deadline, bounded := t.Deadline()
	for {
		err := check()
		if err == nil {
			return
		}
		if bounded && time.Until(deadline) < deadlineMargin {
			t.Fatalf("still not met as the test binary's timeout nears: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitExactCounts waits until status.delivery.delivered of each named
// subscription of ns equals the number of distinct event ids its receiver
// acknowledged. A count above that fails at once: some delivery was counted
// twice. The status is read before the receiver, and a receiver records an
// acknowledgement before the dispatcher can see it, so a correct count is
// never above what is read after it.
func waitExactCounts(ctx context.Context, t *testing.T, c *cluster, ns string, rcvs map[string]*receiver) {
	t.Helper()
	for name, rcv := range rcvs {
		sub := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		eventually(t, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
				return err
			}
			var delivered int64
			if d := sub.Status.Delivery; d != nil {
				delivered = d.Delivered
			}
			acked := int64(len(rcv.acked()))
			if delivered > acked {
				t.Fatalf("subscription %s: status.delivery.delivered is %d, but its receiver acknowledged %d distinct events: deliveries were counted twice",
					name, delivered, acked)
			}
			if delivered < acked {
				return fmt.Errorf("subscription %s: status.delivery.delivered is %d, its receiver acknowledged %d distinct events", name, delivered, acked)
			}
			return nil
		})
	}
}

// settleExactCounts checks the status counts once every accepted event has
// arrived, then publishes one more event that every subscription in rcvs
// matches and checks again once it has arrived: a status written after that
// event's delivery also holds whatever was counted before it, so a
// redelivery counted twice late cannot hide behind an early equal reading.
func settleExactCounts(ctx context.Context, t *testing.T, c *cluster, ns string, ingest func() string, markerType string, rcvs map[string]*receiver) {
	t.Helper()
	waitExactCounts(ctx, t, c, ns, rcvs)
	const marker = "marker-0"
	eventually(t, func() error {
		code, body, err := publish(ingest(), "", ns, map[string]any{"id": marker, "type": markerType, "data": 0})
		if err != nil || code != http.StatusAccepted {
			return fmt.Errorf("publishing the marker: %d %v %v", code, body, err)
		}
		return nil
	})
	for name, rcv := range rcvs {
		eventually(t, func() error {
			if rcv.acked()[marker] == 0 {
				return fmt.Errorf("%s has not acknowledged the marker yet", name)
			}
			return nil
		})
	}
	waitExactCounts(ctx, t, c, ns, rcvs)
}

// checkIDsMatchBodies checks that every request a ledger's receiver got
// carries as webhook-id the id of the event whose body it carries: the
// producer's id "<prefix>-<n>" for the event with data n. A redelivery under
// a new id would also show as an event nobody published.
func checkIDsMatchBodies(t *testing.T, name string, rcv *receiver) (redelivered int) {
	t.Helper()
	for _, d := range rcv.deliveries() {
		id := d.Header.Get("webhook-id")
		var body struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(d.Body, &body); err != nil {
			t.Errorf("%s: request with webhook-id %q has a body that is not JSON: %v", name, id, err)
			continue
		}
		if want := id[strings.LastIndexByte(id, '-')+1:]; string(body.Data) != want {
			t.Errorf("%s: request with webhook-id %q carries the event with data %s", name, id, body.Data)
		}
	}
	for _, n := range rcv.ids() {
		if n > 1 {
			redelivered++
		}
	}
	return redelivered
}

// publishBatch POSTs events as one batch and returns the status code, the
// ids the answer says were stored, and the answer.
func publishBatch(addr, ns string, events []map[string]any) (code int, stored []string, answer string, err error) {
	body, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		return 0, nil, "", err
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/namespaces/"+ns+"/events:batch", bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, "", err
	}
	var out struct {
		Results []struct {
			ID     string `json:"id"`
			Status int    `json:"status"`
		} `json:"results"`
	}
	_ = json.Unmarshal(raw, &out)
	for _, r := range out.Results {
		if r.Status == http.StatusAccepted {
			stored = append(stored, r.ID)
		}
	}
	return resp.StatusCode, stored, string(raw), nil
}

// orderedReceiver records, for a subscription with ordered delivery, the
// sequence number of every attempt and of every attempt it acknowledged,
// answering 503 without Retry-After while down.
type orderedReceiver struct {
	*receiver
	down     atomic.Bool
	mu       sync.Mutex
	attempts []int
	acked    []int
}

func newOrderedReceiver(t *testing.T) *orderedReceiver {
	o := &orderedReceiver{}
	o.down.Store(true)
	o.receiver = newWrappedReceiver(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			var body struct {
				Data struct{ Seq int } `json:"data"`
			}
			if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			down := o.down.Load()
			o.mu.Lock()
			o.attempts = append(o.attempts, body.Data.Seq)
			if !down {
				o.acked = append(o.acked, body.Data.Seq)
			}
			o.mu.Unlock()
			if down {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	})
	return o
}

func (o *orderedReceiver) snapshot() (attempts, acked []int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.attempts), slices.Clone(o.acked)
}

// checkOrder fails unless the acknowledged events are exactly 0..n-1 in
// that order and no attempt came before one of an earlier event.
func (o *orderedReceiver) checkOrder(t *testing.T, n int) {
	t.Helper()
	attempts, acked := o.snapshot()
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(acked, want) {
		t.Errorf("acknowledged %d events, in the order %s; want 0..%d in ingest order, each once", len(acked), summarise(acked), n-1)
	}
	if !slices.IsSorted(attempts) {
		t.Errorf("attempts in the order %s: an event was attempted after a later one", summarise(attempts))
	}
}

// summarise prints a sequence, shortening long runs of consecutive numbers.
func summarise(seq []int) string {
	var parts []string
	for i := 0; i < len(seq); {
		j := i
		for j+1 < len(seq) && seq[j+1] == seq[j]+1 {
			j++
		}
		if j-i >= 2 {
			parts = append(parts, fmt.Sprintf("%d..%d", seq[i], seq[j]))
		} else {
			for k := i; k <= j; k++ {
				parts = append(parts, strconv.Itoa(seq[k]))
			}
		}
		i = j + 1
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// resumeIfHeld clears a suspension the dispatcher chose (a circuit breaker
// on a dead endpoint) the way a user does, by setting and clearing
// spec.suspend, once per generation.
func resumeIfHeld(ctx context.Context, t *testing.T, c *cluster, sub *hooklinev1.WebhookSubscription, resumed map[int64]bool) {
	t.Helper()
	if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
		return
	}
	cond := meta.FindStatusCondition(sub.Status.Conditions, hooklinev1.ConditionSuspended)
	if sub.Spec.Suspend || cond == nil || cond.Status != metav1.ConditionTrue || resumed[sub.Generation] {
		return
	}
	t.Logf("the dispatcher suspended %s (%s: %s); resuming it", sub.Name, cond.Reason, cond.Message)
	update(ctx, t, c, sub, func() { sub.Spec.Suspend = true })
	update(ctx, t, c, sub, func() { sub.Spec.Suspend = false })
	resumed[sub.Generation] = true
}

// startDefaultDispatcher creates namespace ns with the WebhookSecret
// "signing", and the WebhookDispatcher "default" admitting every namespace
// and delivering to loopback over plain HTTP, and runs one instance of it
// with an embedded queue and producer authentication off.
func startDefaultDispatcher(ctx context.Context, t *testing.T, c *cluster, ns, instance string, args ...string) *dispatcherProc {
	t.Helper()
	if err := c.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	d := &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: operatorNamespace},
		Spec: hooklinev1.WebhookDispatcherSpec{
			AllowedNamespaces:      hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromAll},
			Egress:                 hooklinev1.EgressPolicy{AllowPlainHTTP: true, AllowedCIDRs: []string{"127.0.0.0/8"}},
			ProducerAuthentication: hooklinev1.ProducerAuthNone,
		},
	}
	ws := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Name: "signing", Namespace: ns}}
	for _, o := range []client.Object{d, ws} {
		if err := c.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() error { return ready(ctx, c.admin, ws) })
	p := c.startDispatcher(t, operatorNamespace, "default", instance,
		append([]string{"--data-dir=" + t.TempDir(), "--producer-authentication=None"}, args...)...)
	p.waitReady(t)
	return p
}

// failingRetry keeps events of a failing endpoint pending for the whole
// test, however slow the machine (100 attempts, at most 15 s apart: 25
// minutes before one is given up on; for a day), and retries them within
// 15 s once it recovers. Retries that far apart leave memory for the
// backlog stream.
func failingRetry(s *hooklinev1.WebhookSubscription) {
	s.Spec.Delivery.Retry = hooklinev1.RetryPolicy{
		MaxAttempts:    100,
		MaxAge:         &metav1.Duration{Duration: 24 * time.Hour},
		InitialBackoff: &metav1.Duration{Duration: time.Second},
		MaxBackoff:     &metav1.Duration{Duration: 15 * time.Second},
	}
}

// TestDeadEndpointKeepsIngestOpen publishes several times the events
// stream's bound (--queue-max-bytes, 8 MiB) while two subscriptions'
// endpoint answers 503 without Retry-After, one of them with ordered
// delivery, and a third subscription's endpoint is healthy. Events are
// published in rounds, each once the healthy subscription has the previous
// one, so that only the dead endpoint's backlog could fill the stream. The
// backlog stream's bound (--backlog-max-bytes, 256 MiB) holds all of it, so
// ingest must never refuse an event; the healthy subscription gets every
// event; the dead ones' status shows every event kept; and once the
// endpoint recovers, both dead subscriptions get every event, the ordered
// one in ingest order with no gap.
func TestDeadEndpointKeepsIngestOpen(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context()
	const (
		ns         = "deadend"
		queueBytes = 8 << 20
		rounds     = 40
		perRound   = 500
		perBatch   = 100
	)
	p := startDefaultDispatcher(ctx, t, c, ns, "deadend-0",
		fmt.Sprintf("--queue-max-bytes=%d", queueBytes), fmt.Sprintf("--backlog-max-bytes=%d", 256<<20))

	var down atomic.Bool
	down.Store(true)
	healthy := newReceiver(t, nil)
	// Hundreds of thousands of failed attempts come to the dead endpoint:
	// it counts them rather than keep each one.
	dead := newCountingReceiver(t, func(w http.ResponseWriter, _ int) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ordered := newOrderedReceiver(t)
	subs := map[string]*hooklinev1.WebhookSubscription{
		"healthy": createSubscription(ctx, t, c, ns, "healthy", healthy.URL, []string{"load.*"}, nil),
		"dead":    createSubscription(ctx, t, c, ns, "dead", dead.URL, []string{"load.*"}, failingRetry),
		"dead-ordered": createSubscription(ctx, t, c, ns, "dead-ordered", ordered.URL, []string{"load.*"}, func(s *hooklinev1.WebhookSubscription) {
			failingRetry(s)
			s.Spec.Delivery.Ordering = hooklinev1.OrderingOrdered
		}),
	}
	for _, sub := range subs {
		eventually(t, func() error { return condition(ctx, c, sub, hooklinev1.ConditionAccepted, metav1.ConditionTrue) })
	}

	pad := strings.Repeat("x", 1000)
	var accepted []string
	seq := 0
	for round := range rounds {
		for range perRound / perBatch {
			batch := make([]map[string]any, perBatch)
			for i := range batch {
				batch[i] = map[string]any{"id": fmt.Sprintf("load-%d", seq), "type": "load.created", "data": map[string]any{"seq": seq, "pad": pad}}
				seq++
			}
			code, stored, answer, err := publishBatch(p.ingest, ns, batch)
			if err != nil {
				t.Fatalf("round %d: publishing a batch: %v", round, err)
			}
			if code != http.StatusAccepted || len(stored) != perBatch {
				t.Fatalf("round %d: ingest answered %d with %d of %d events stored, after %d events (about %d MiB of data; the events stream is bounded at %d MiB) were accepted while an endpoint was down: %.300s",
					round, code, len(stored), perBatch, len(accepted), len(accepted)*len(pad)>>20, queueBytes>>20, answer)
			}
			accepted = append(accepted, stored...)
		}
		// The healthy subscription keeps up before the next round, so
		// nothing but the dead endpoint's backlog holds the stream.
		eventually(t, func() error {
			if got, want := len(healthy.acked()), len(accepted); got < want {
				return fmt.Errorf("round %d: the healthy endpoint acknowledged %d of %d events", round, got, want)
			}
			return nil
		})
	}
	t.Logf("%d events of about 1 KiB accepted with an endpoint down and --queue-max-bytes %d MiB", len(accepted), queueBytes>>20)
	healthyAcked := healthy.acked()
	for _, id := range accepted {
		if healthyAcked[id] == 0 {
			t.Fatalf("the healthy endpoint never got %s", id)
		}
	}

	// The dead endpoint is tried, and its subscriptions keep every event.
	eventually(t, func() error {
		if attempts, _ := ordered.snapshot(); dead.requests() == 0 || len(attempts) == 0 {
			return fmt.Errorf("the down endpoint got %d and %d attempts", dead.requests(), len(attempts))
		}
		return nil
	})
	for _, name := range []string{"dead", "dead-ordered"} {
		sub := subs[name]
		eventually(t, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
				return err
			}
			d := sub.Status.Delivery
			if d == nil || d.Backlog+d.DeadLettered < int64(len(accepted)) {
				return fmt.Errorf("%s: delivery status %+v, want backlog and dead letters to hold all %d events", name, d, len(accepted))
			}
			return nil
		})
	}

	down.Store(false)
	ordered.down.Store(false)
	t.Logf("the endpoint is back")
	resumed := map[string]map[int64]bool{"dead": {}, "dead-ordered": {}}
	eventually(t, func() error {
		for _, name := range []string{"dead", "dead-ordered"} {
			resumeIfHeld(ctx, t, c, subs[name], resumed[name])
		}
		got := dead.acked()
		for _, id := range accepted {
			if got[id] == 0 {
				return fmt.Errorf("after recovery the dead subscription has %d of %d events, lacking %s", len(got), len(accepted), id)
			}
		}
		if _, acked := ordered.snapshot(); len(acked) < len(accepted) {
			return fmt.Errorf("after recovery the ordered subscription has %d of %d events", len(acked), len(accepted))
		}
		return nil
	})
	ordered.checkOrder(t, len(accepted))
}

// TestOrderedBehindFailingEndpoint publishes events one at a time to a
// subscription with ordered delivery whose endpoint answers 503 without
// Retry-After until the first event has been attempted six times, with
// retries up to 4 s apart (long enough to leave the in-memory queue), then
// recovers: the endpoint acknowledges every event once, in ingest order, no
// attempt comes after one of a later event, and status counts them all.
func TestOrderedBehindFailingEndpoint(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context()
	const ns, events, failures = "ordered", 40, 6
	p := startDefaultDispatcher(ctx, t, c, ns, "ordered-0")
	rcv := newOrderedReceiver(t)
	sub := createSubscription(ctx, t, c, ns, "ledger", rcv.URL, []string{"ledger.*"}, func(s *hooklinev1.WebhookSubscription) {
		s.Spec.Delivery.Ordering = hooklinev1.OrderingOrdered
		s.Spec.Delivery.Concurrency = 10
		s.Spec.Delivery.Retry = hooklinev1.RetryPolicy{
			MaxAttempts:    100,
			MaxAge:         &metav1.Duration{Duration: time.Hour},
			InitialBackoff: &metav1.Duration{Duration: time.Second},
			MaxBackoff:     &metav1.Duration{Duration: 4 * time.Second},
		}
	})
	eventually(t, func() error { return condition(ctx, c, sub, hooklinev1.ConditionAccepted, metav1.ConditionTrue) })
	for i := range events {
		code, body, err := publish(p.ingest, "", ns, map[string]any{"id": fmt.Sprintf("ledger-%d", i), "type": "ledger.entry", "data": map[string]any{"seq": i}})
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("publishing event %d: %d %v %v", i, code, body, err)
		}
	}
	eventually(t, func() error {
		attempts, _ := rcv.snapshot()
		if n := len(attempts); n < failures {
			return fmt.Errorf("%d failed attempts so far, waiting for %d", n, failures)
		}
		return nil
	})
	rcv.down.Store(false)
	attempts, _ := rcv.snapshot()
	t.Logf("the endpoint recovers after %d failed attempts of events %s", len(attempts), summarise(slices.Compact(attempts)))
	eventually(t, func() error {
		if _, acked := rcv.snapshot(); len(acked) < events {
			return fmt.Errorf("%d of %d events acknowledged", len(acked), events)
		}
		return nil
	})
	rcv.checkOrder(t, events)
	eventually(t, func() error {
		if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
			return err
		}
		if d := sub.Status.Delivery; d == nil || d.Delivered != events || d.DeadLettered != 0 || d.Backlog != 0 {
			return fmt.Errorf("delivery status %+v, want %d delivered, none dead-lettered, no backlog", d, events)
		}
		return nil
	})
}
