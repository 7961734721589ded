package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/report"
)

// deliverer makes delivery attempts: it applies a subscription's filter,
// rate limit and retry policy around one signed request, and stores what
// is given up on as a dead letter.
type deliverer struct {
	clock   clock.Clock
	log     *slog.Logger
	sender  *delivery.Sender
	bodies  *sharedBodies
	metrics *metrics
	queue   *queue.Queue
	// events records Kubernetes Events; set when the dispatcher runs.
	events func() events.EventRecorder
	// deadLetters writes the DeadLettered Event series.
	deadLetters *deadLetterEvents
}

func (d *deliverer) attempt(ctx context.Context, key report.Key, st *deliveryState, it *item) attempt {
	ns, name := key.Namespace, key.Name
	ev := it.ev.Event
	direct := it.ev.Direct != ""
	if ctx.Err() != nil {
		return attempt{verdict: retry}
	}
	// A direct event (a replayed dead letter) was meant for this
	// subscription alone and passed its filters when first delivered; an
	// event read back from the backlog passed them before it moved.
	if !direct && it.src == fromEvents && it.attempts == 0 {
		if !st.patterns.Match(ev.Type) {
			d.metrics.deliveries.WithLabelValues(ns, name, outcomeFiltered).Inc()
			return attempt{verdict: finished}
		}
		if st.filter != nil {
			matched, err := st.filter.Match(filterInput(ev))
			var a attempt
			if err != nil {
				// A filter failing at runtime does not match; the status
				// says so.
				a.filterError = fmt.Sprintf("event %s: %v", ev.ID, err)
				d.metrics.deliveries.WithLabelValues(ns, name, outcomeFilterError).Inc()
			}
			if !matched {
				if err == nil {
					d.metrics.deliveries.WithLabelValues(ns, name, outcomeFiltered).Inc()
				}
				a.verdict = finished
				return a
			}
		}
	}
	if st.limiter != nil && !st.limiter.wait(ctx, noProgress) {
		return attempt{verdict: retry} // shutting down
	}

	// Every subscription the event goes to shares its body. One that
	// cannot be encoded is left to Send, which refuses it as invalid.
	msg := delivery.Message{ID: ev.ID, Type: ev.Type, Time: ev.Time, Data: ev.Data}
	if body, err := d.bodies.body(ev, it.ev.Stored); err == nil {
		msg.Encoded = body
	}
	res := d.sender.Send(ctx, st.target, msg)
	now := d.clock.Now()
	if res.RetryAfter > 0 && st.limiter != nil {
		// The receiver asked for a pause: every delivery to it waits, not
		// only this one's retry.
		st.limiter.retryAfter(res.RetryAfter)
	}
	n := it.attempts + 1
	dec := st.policy.Decide(res, n, it.ev.Stored, now, nil)
	d.metrics.attemptLatency.WithLabelValues(ns, name).Observe(res.Latency.Seconds())
	outcome := report.Outcome{Time: now, Success: res.Success, StatusCode: res.StatusCode, Class: string(res.Class),
		Message: res.Message, Latency: res.Latency}
	// A logger with the attempt's attributes costs allocations every
	// delivery would pay; only the outcomes that log build one.
	log := func() *slog.Logger { return d.log.With("subscription", ns+"/"+name, "event", ev.ID, "attempt", n) }

	switch dec.Action {
	case delivery.Ack:
		d.metrics.deliveries.WithLabelValues(ns, name, outcomeDelivered).Inc()
		d.metrics.endToEnd.WithLabelValues(ns, name).Observe(now.Sub(it.ev.Stored).Seconds())
		return attempt{verdict: finished, outcome: &outcome}
	case delivery.Retry:
		d.metrics.deliveries.WithLabelValues(ns, name, outcomeRetried).Inc()
		log().Debug("Delivery failed, will retry", "class", res.Class, "status", res.StatusCode, "in", dec.Delay.Round(time.Millisecond), "reason", dec.Reason)
		return attempt{verdict: retry, delay: dec.Delay, outcome: &outcome}
	case delivery.DeadLetter:
		err := d.queue.DeadLetter(ctx, ns, name, key.UID, it.src == fromBacklog, it.ev, queue.Failure{Class: string(res.Class),
			StatusCode: res.StatusCode, Message: res.Message, Attempts: n})
		if err != nil {
			// Not given up on until the letter is durable: the event
			// stays, and is tried again.
			log().Warn("Storing a dead letter failed; the event is tried again", "err", err)
			return attempt{verdict: retry, delay: time.Second}
		}
		outcome.DeadLettered = true
		d.metrics.deliveries.WithLabelValues(ns, name, outcomeDeadLettered).Inc()
		log().Warn("Delivery dead-lettered", "class", res.Class, "status", res.StatusCode, "reason", dec.Reason)
		d.deadLetterEvent(key, st, ev.ID, n, res, dec)
		return attempt{verdict: finished, outcome: &outcome}
	default: // delivery.Suspend
		d.metrics.deliveries.WithLabelValues(ns, name, outcomeSuspended).Inc()
		log().Warn("Endpoint answered 410 Gone: subscription suspended")
		if rec := d.events(); rec != nil {
			rec.Eventf(st.obj, nil, "Warning", hooklinev1.ReasonEndpointGone, "Suspend",
				"The endpoint answered 410 Gone; deliveries are held until the spec changes or spec.suspend is set and cleared")
		}
		return attempt{verdict: hold, outcome: &outcome}
	}
}

// noProgress is the rate limiter's in-progress callback: a lane's items
// have no acknowledgement deadline to extend.
func noProgress() error { return nil }

// waitTurn waits for the subscription's rate limit to allow one request,
// calling inProgress now and then while it waits. It reports false if ctx
// ended first.
func waitTurn(ctx context.Context, clk clock.Clock, lim *rate.Limiter, inProgress func() error) bool {
	r := lim.ReserveN(clk.Now(), 1)
	if !r.OK() {
		return false
	}
	for wait := r.DelayFrom(clk.Now()); wait > 0; wait = r.DelayFrom(clk.Now()) {
		select {
		case <-ctx.Done():
			r.CancelAt(clk.Now())
			return false
		case <-clk.After(min(wait, inProgressEvery)):
		}
		if r.DelayFrom(clk.Now()) > 0 {
			_ = inProgress()
		}
	}
	return true
}

// inProgressEvery is how often a wait for the rate limit reports progress.
const inProgressEvery = 10 * time.Second

// filterInput is the "event" a CEL filter sees.
func filterInput(ev queue.Event) map[string]any {
	var data any
	if len(ev.Data) > 0 {
		_ = json.Unmarshal(ev.Data, &data)
	}
	return map[string]any{"id": ev.ID, "type": ev.Type, "time": ev.Time, "data": data}
}

// throttle lets one Event a minute through, counting those it held back
// in between so the next one can say how many there were.
type throttle struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow says whether an Event may be emitted at now and, if so, how many
// were held back since the last one.
func (t *throttle) allow(now time.Time) (ok bool, heldBack int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.last.IsZero() && now.Sub(t.last) < time.Minute {
		t.suppressed++
		return false, 0
	}
	heldBack = t.suppressed
	t.last, t.suppressed = now, 0
	return true, heldBack
}

func (d *deliverer) deadLetterEvent(key report.Key, st *deliveryState, id string, attempts int, res delivery.Result, dec delivery.Decision) {
	if d.deadLetters == nil {
		return
	}
	// Counted in the subscription's DeadLettered Event series (events.go).
	d.deadLetters.record(key, st.obj, deadLetterNote(id, attempts, dec.Reason, res.Message))
}

func truncateNote(s string) string {
	const max = 1000
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
