package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/test/testenv"
)

// TestQueueBound fills a small embedded queue while its subscriptions are
// suspended: ingest answers 503 once it is full (never 202), the
// WebhookDispatcher gets Warning Events as the queue nears and reaches its
// bound, and resuming delivers every accepted event and makes room again.
func TestQueueBound(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	const ns = "bounded"
	all, evens := setupTicks(ctx, t, c, ns, nil)
	p := c.startDispatcher(t, ns, ns, "bounded-0", "--data-dir="+t.TempDir(), "--queue-max-bytes=65536", "--producer-authentication=None")
	p.waitReady(t)
	waitAccepted(ctx, t, c, ns)

	subs := map[string]*hooklinev1.WebhookSubscription{}
	for _, name := range []string{"all", "evens"} {
		sub := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		update(ctx, t, c, sub, func() { sub.Spec.Suspend = true })
		waitFor(t, 30*time.Second, func() error { return condition(ctx, c, sub, hooklinev1.ConditionSuspended, metav1.ConditionTrue) })
		subs[name] = sub
	}

	pad := strings.Repeat("x", 1000)
	tick := func(n int) map[string]any {
		typ := "tick.odd"
		if n%2 == 0 {
			typ = "tick.even"
		}
		return map[string]any{"id": fmt.Sprintf("full-%d", n), "type": typ, "data": map[string]any{"n": n, "pad": pad}}
	}
	l := newLedger()
	n := 0
	var refusal map[string]any
	for ; n < 500; n++ {
		code, body, err := publish(p.ingest, "", ns, tick(n))
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusServiceUnavailable {
			refusal = body
			break
		}
		if code != http.StatusAccepted {
			t.Fatalf("event %d: %d %v", n, code, body)
		}
		l.accepted[fmt.Sprintf("full-%d", n)] = true
	}
	if refusal == nil {
		t.Fatalf("500 events of 1 KiB fitted into a 64 KiB queue")
	}
	if len(l.accepted) < 20 {
		t.Fatalf("only %d events fitted before the queue was full", len(l.accepted))
	}
	if msg := fmt.Sprint(refusal["message"]); !strings.Contains(msg, "queue is full") {
		t.Errorf("503 body %v does not say the queue is full", refusal)
	}
	// Full stays full: the same event is refused again, never accepted.
	if code, body, err := publish(p.ingest, "", ns, tick(n)); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("publishing into the full queue again: %d %v %v", code, body, err)
	}
	t.Logf("%d events of 1 KiB accepted before the 64 KiB queue answered 503", len(l.accepted))

	disp := &hooklinev1.WebhookDispatcher{ObjectMeta: metav1.ObjectMeta{Name: ns, Namespace: ns}}
	for _, reason := range []string{hooklinev1.ReasonQueueNearlyFull, hooklinev1.ReasonQueueFull} {
		waitFor(t, 30*time.Second, func() error { return hasEvent(ctx, c, disp, reason) })
	}
	if got := len(all.ids()) + len(evens.ids()); got != 0 {
		t.Fatalf("suspended subscriptions received %d deliveries", got)
	}

	for _, sub := range subs {
		update(ctx, t, c, sub, func() { sub.Spec.Suspend = false })
	}
	waitDelivered(t, l, all, evens)
	// Delivered events leave the queue, so it accepts again.
	waitFor(t, 30*time.Second, func() error {
		code, body, err := publish(p.ingest, "", ns, tick(n))
		if err != nil || code != http.StatusAccepted {
			return fmt.Errorf("publishing after the backlog was delivered: %d %v %v", code, body, err)
		}
		return nil
	})
}
