package dispatcher

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/events"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/report"
)

// statusSource is what the status writer reports: the subscriptions this
// instance serves, how it serves them, and what their lanes' latest
// checkpoints and the dead-letter store say of their deliveries. It is the
// writer's one view of the dispatcher.
type statusSource struct {
	subs    *subscriptions
	store   *store
	view    *progressView
	queue   *queue.Queue
	metrics *metrics
	log     *slog.Logger
	// events is the dispatcher's event recorder, which exists once it runs.
	events func() events.EventRecorder

	// tick is what the status writer's current tick reports of the dead
	// letters, read once at its start (see BeforeTick).
	tick atomic.Pointer[tickSnapshot]
}

var _ report.Source = (*statusSource)(nil)

// tickSnapshot is read at the start of a status tick: the lanes'
// checkpoints, then the dead letters kept. A lane stores a dead letter
// before its checkpoint counts it, so every dead letter the snapshot's
// totals count is in the counts read after them (unless it has expired
// since): a status never says more were dead-lettered than are kept for
// replay because the two were read at different moments.
type tickSnapshot struct {
	lanes  map[string]laneRecord
	counts *queue.DeadLetterCounts
}

// Keys lists the served subscriptions.
func (r *statusSource) Keys() []report.Key { return r.subs.keys() }

// Lookup is what the status writer needs about one subscription: what
// this instance computed of how it is served, and what the latest
// checkpoint of its lane says about its deliveries. A subscription no lane
// has served at its current generation yet is not reported: it is not
// accepted until its events are routed.
func (r *statusSource) Lookup(ns, name string) (report.State, bool) {
	sv, st := r.subs.servedState(ns, name)
	if sv == nil || st == nil {
		return report.State{}, false
	}
	// The status the writer compares with must be the latest the API
	// server returned, which the informer may hold before the
	// subscription is synced again.
	obj, err := r.store.subscription(ns + "/" + name)
	if err != nil || obj == nil {
		return report.State{}, false
	}
	rec, ok := r.view.lane(sv.token)
	if !ok || rec.Owner == "" || (st.accepted && rec.Generation != obj.Generation) {
		return report.State{}, false
	}
	var dead uint64
	totals := rec.Totals
	if tick := r.tick.Load(); tick != nil {
		dead = tick.counts.Kept(ns, name)
		if snap, ok := tick.lanes[sv.token]; ok {
			// The totals as they were when the counts were read; a
			// lane new since then has none to be behind.
			totals = snap.Totals
		}
	}
	backlog := rec.Pending + rec.Moved
	r.metrics.backlog.WithLabelValues(ns, name).Set(float64(backlog))
	r.metrics.deadLettered.WithLabelValues(ns, name).Set(float64(dead))
	return report.State{
		Object:           obj,
		Accepted:         st.accepted,
		AcceptedReason:   st.reason,
		AcceptedMessage:  st.msg,
		SuspendedReason:  st.suspended,
		SuspendedMessage: st.suspendMsg,
		Backlog:          backlog,
		DeadLettered:     int64(dead),
		SuspendAfter:     st.suspendAfter,
		Validation:       st.validation,
		LastReplay:       r.subs.lastReplay(sv, obj),
		Totals:           &totals,
	}, true
}

// BeforeTick reads every subscription's dead letters from the queue for
// the status writer's tick about to start, after the lanes' checkpoints
// (see tickSnapshot): one request serves all of the tick's lookups. When
// the queue does not answer, the tick reports the last snapshot.
func (r *statusSource) BeforeTick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lanes := r.view.snapshot()
	c, err := r.queue.DeadLetterCounts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("Reading dead letters from the queue", "err", err)
		}
		return
	}
	r.tick.Store(&tickSnapshot{lanes: lanes, counts: c})
}

// Suspended is told by the status writer that it suspends a subscription
// after sustained failure. Every instance, this one included, holds it
// once its informer sees the status written; an Event says so.
func (r *statusSource) Suspended(obj *hooklinev1.WebhookSubscription, msg string) {
	r.events().Eventf(obj, nil, "Warning", hooklinev1.ReasonSustainedFailure, "Suspend", "%s", msg)
}
