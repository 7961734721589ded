package dispatcher

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/hookline/hookline/internal/queue"
)

// router reads the events stream with one reader and hands each event to
// the lanes it is for: those of the event's namespace whose patterns match
// its type, or, for an event addressed to one subscription alone, that
// subscription's lane. It delivers nothing itself and never waits for a
// lane: a lane takes an event into memory or moves it out of the way.
type router struct {
	q     *queue.Queue
	mover *mover

	mu      sync.RWMutex
	byNS    map[string]map[*lane]struct{}
	byToken map[string]*lane

	// pos is the next sequence to route: every event before it has been
	// handed to its lanes.
	pos atomic.Uint64
	// started is closed once routing began at its first position.
	started chan struct{}
}

func newRouter(q *queue.Queue, m *mover) *router {
	return &router{q: q, mover: m, byNS: map[string]map[*lane]struct{}{}, byToken: map[string]*lane{}, started: make(chan struct{})}
}

// add routes events to l from now on.
func (r *router) add(l *lane) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.byToken[l.token]; old != nil {
		delete(r.byNS[old.key.Namespace], old)
	}
	r.byToken[l.token] = l
	set := r.byNS[l.key.Namespace]
	if set == nil {
		set = map[*lane]struct{}{}
		r.byNS[l.key.Namespace] = set
	}
	set[l] = struct{}{}
}

// remove stops routing events to l, and freezes l at the position where
// it stopped: every event before it was offered to l, none after.
func (r *router) remove(l *lane) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer l.freeze(r.pos.Load())
	if r.byToken[l.token] == l {
		delete(r.byToken, l.token)
	}
	if set := r.byNS[l.key.Namespace]; set != nil {
		delete(set, l)
		if len(set) == 0 {
			delete(r.byNS, l.key.Namespace)
		}
	}
}

// run routes events from sequence from until ctx ends.
func (r *router) run(ctx context.Context, from uint64) error {
	r.pos.Store(from)
	close(r.started)
	return r.q.Read(ctx, from, func(ev queue.Stored) error {
		r.mover.wait(ctx)
		r.route(ev)
		r.pos.Store(ev.Seq + 1)
		return nil
	})
}

func (r *router) route(ev queue.Stored) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if ev.Direct != "" {
		if l := r.byToken[ev.Direct]; l != nil && l.wants(ev.Seq) {
			l.offer(ev)
		}
		return
	}
	for l := range r.byNS[ev.Event.Namespace] {
		if l.matches(ev.Event.Type) && l.wants(ev.Seq) {
			l.offer(ev)
		}
	}
}

// position is the next sequence to route, 0 before routing began.
func (r *router) position() uint64 { return r.pos.Load() }
