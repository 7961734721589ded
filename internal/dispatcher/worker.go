package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/report"
)

// startWorker consumes a subscription's events with its concurrency bound,
// so a hanging endpoint holds only its own slots. It returns the function
// that stops it.
func (s *subscriptions) startWorker(parent context.Context, sv *served, concurrency int) context.CancelFunc {
	ctx, cancel := context.WithCancel(parent)
	// Called with s.mu held.
	sv.worker++
	id := sv.worker
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		err := s.d.queue.Consume(ctx, sv.consumer, concurrency, func(_ context.Context, m *queue.Message) {
			// Deliveries run on their own context: stopping consumption
			// lets those in flight finish (see Dispatcher.shutdown).
			s.d.deliver(s.d.deliverCtx, s, sv, m)
		})
		if err != nil && ctx.Err() == nil {
			s.d.log.Error("Consuming a subscription's events", "subscription", sv.key.Namespace+"/"+sv.key.Name, "err", err)
			// Mark the worker gone, so the next sync starts another.
			s.mu.Lock()
			if sv.worker == id {
				sv.cancel = nil
			}
			s.mu.Unlock()
			cancel()
			s.queue.AddRateLimited(sv.key.Namespace + "/" + sv.key.Name)
		}
	}()
	return cancel
}

// deliver routes one event to one subscription and makes one attempt,
// then settles the message: acknowledged, retried later, dead-lettered, or
// held after a 410.
func (d *Dispatcher) deliver(ctx context.Context, subs *subscriptions, sv *served, m *queue.Message) {
	st := sv.state.Load()
	ns, name := sv.key.Namespace, sv.key.Name
	log := d.log.With("subscription", ns+"/"+name, "event", m.Event.ID, "attempt", m.Attempt)
	ev := m.Event
	if !st.accepted || st.suspended != "" || st.awaitingValidation {
		// Stopped between the fetch and now: the message comes back
		// once the subscription is served again.
		d.settle(ctx, log, m.Retry(ctx, time.Second), "holding")
		return
	}
	// A direct message (a replayed dead letter) was meant for this
	// subscription alone and passed its filters when first delivered.
	if !m.Direct && !st.patterns.Match(ev.Type) {
		d.metrics.deliveries.WithLabelValues(ns, name, outcomeFiltered).Inc()
		d.settle(ctx, log, m.Ack(ctx), "acknowledging a filtered event")
		return
	}
	if st.filter != nil && !m.Direct {
		matched, err := st.filter.Match(filterInput(ev))
		if err != nil {
			// A filter failing at runtime does not match; the status says so.
			d.recorder.FilterError(sv.key, fmt.Sprintf("event %s: %v", ev.ID, err))
			d.metrics.deliveries.WithLabelValues(ns, name, outcomeFilterError).Inc()
		}
		if !matched {
			if err == nil {
				d.metrics.deliveries.WithLabelValues(ns, name, outcomeFiltered).Inc()
			}
			d.settle(ctx, log, m.Ack(ctx), "acknowledging a filtered event")
			return
		}
	}
	if st.limiter != nil && !st.limiter.wait(ctx, m.InProgress) {
		return // shutting down: the message is redelivered
	}

	// Every subscription the event goes to shares its body. One that
	// cannot be encoded is left to Send, which refuses it as invalid.
	msg := delivery.Message{ID: ev.ID, Type: ev.Type, Time: ev.Time, Data: ev.Data}
	if body, err := d.bodies.body(ev, m.Stored); err == nil {
		msg.Encoded = body
	}
	res := d.sender.Send(ctx, st.target, msg)
	now := d.opts.Clock.Now()
	if res.RetryAfter > 0 && st.limiter != nil {
		// The receiver asked for a pause: every delivery to it waits, not
		// only this one's retry.
		st.limiter.retryAfter(res.RetryAfter)
	}
	dec := st.policy.Decide(res, m.Attempt, m.Stored, now, nil)
	d.metrics.attemptLatency.WithLabelValues(ns, name).Observe(res.Latency.Seconds())
	outcome := report.Outcome{Time: now, Success: res.Success, StatusCode: res.StatusCode, Class: string(res.Class),
		Message: res.Message, Latency: res.Latency}

	switch dec.Action {
	case delivery.Ack:
		d.metrics.deliveries.WithLabelValues(ns, name, outcomeDelivered).Inc()
		d.metrics.endToEnd.WithLabelValues(ns, name).Observe(now.Sub(m.Stored).Seconds())
		d.settle(ctx, log, m.Ack(ctx), "acknowledging a delivered event")
	case delivery.Retry:
		d.metrics.deliveries.WithLabelValues(ns, name, outcomeRetried).Inc()
		log.Info("Delivery failed, will retry", "class", res.Class, "status", res.StatusCode, "in", dec.Delay.Round(time.Millisecond), "reason", dec.Reason)
		d.settle(ctx, log, m.Retry(ctx, dec.Delay), "scheduling a retry")
	case delivery.DeadLetter:
		outcome.DeadLettered = true
		d.metrics.deliveries.WithLabelValues(ns, name, outcomeDeadLettered).Inc()
		log.Warn("Delivery dead-lettered", "class", res.Class, "status", res.StatusCode, "reason", dec.Reason)
		err := m.DeadLetter(ctx, ns, name, sv.key.UID, queue.Failure{Class: string(res.Class), StatusCode: res.StatusCode,
			Message: res.Message, Attempts: m.Attempt})
		d.settle(ctx, log, err, "dead-lettering")
		if err == nil {
			d.deadLetterEvent(sv, st, m, res, dec)
		}
	case delivery.Suspend:
		d.metrics.deliveries.WithLabelValues(ns, name, outcomeSuspended).Inc()
		// The consumer is paused at once; the short delay only matters if
		// the pause is lifted, when the held event should go out promptly.
		d.settle(ctx, log, m.Retry(ctx, 5*time.Second), "holding an event for a suspended subscription")
		if subs.suspendGone(sv, st.generation) {
			log.Warn("Endpoint answered 410 Gone: subscription suspended")
			d.events.Eventf(st.obj, nil, "Warning", hooklinev1.ReasonEndpointGone, "Suspend",
				"The endpoint answered 410 Gone; deliveries are held until the spec changes or spec.suspend is set and cleared")
		}
	}
	d.recorder.Record(sv.key, outcome)
}

// waitTurn waits for the subscription's rate limit to allow one request,
// telling JetStream the message is in progress meanwhile so that a long
// wait never gets it redelivered to another worker. It reports false if
// ctx ended first.
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

// inProgressEvery is how often a message waiting for its turn is marked in
// progress; well under the consumer's ack wait.
const inProgressEvery = 10 * time.Second

// settle logs a failure to settle a message; JetStream redelivers it after
// the ack wait, so nothing is lost, at worst delivered twice.
func (d *Dispatcher) settle(ctx context.Context, log interface {
	Warn(string, ...any)
}, err error, what string) {
	if err != nil && ctx.Err() == nil {
		log.Warn("Settling a message failed; it will be redelivered", "doing", what, "err", err)
	}
}

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

func (d *Dispatcher) deadLetterEvent(sv *served, st *deliveryState, m *queue.Message, res delivery.Result, dec delivery.Decision) {
	// Counted in the subscription's DeadLettered Event series (events.go).
	d.deadLetters.record(sv.key, st.obj, deadLetterNote(m.Event.ID, m.Attempt, dec.Reason, res.Message))
}

func truncateNote(s string) string {
	const max = 1000
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
