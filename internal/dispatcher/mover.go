package dispatcher

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hookline/hookline/internal/queue"
)

// mover moves items out of the events stream's way into the backlog
// stream, for every lane at once: what lanes hand it while one batch is
// being stored goes as the next batch, so a move costs a share of one
// sync, never one of its own.
type mover struct {
	q     *queue.Queue
	clock Clock
	log   *slog.Logger

	mu      sync.Mutex
	pending []moveRequest
	items   int
	wake    chan struct{}
	// room is closed and replaced when pending items are taken.
	room chan struct{}
}

type moveRequest struct {
	l     *lane
	items []*item
}

// moverBatch is the most items one store takes; moverBacklog the most that
// may wait before the router pauses (see wait).
const (
	moverBatch   = 1000
	moverBacklog = 20000
	// moveRetry is how long a failed move waits before it is tried again.
	moveRetry = time.Second
)

func newMover(q *queue.Queue, clk Clock, log *slog.Logger) *mover {
	return &mover{q: q, clock: clk, log: log, wake: make(chan struct{}, 1), room: make(chan struct{})}
}

// add queues items of l to move.
func (m *mover) add(l *lane, items []*item) {
	m.mu.Lock()
	m.pending = append(m.pending, moveRequest{l: l, items: items})
	m.items += len(items)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// retryLater queues items again after a pause.
func (m *mover) retryLater(l *lane, items []*item) {
	m.clock.AfterFunc(moveRetry, func() { m.add(l, items) })
}

// wait blocks while too many items wait to be moved, so that a slow
// store slows the router rather than filling memory.
func (m *mover) wait(ctx context.Context) {
	for {
		m.mu.Lock()
		n, room := m.items, m.room
		m.mu.Unlock()
		if n < moverBacklog {
			return
		}
		select {
		case <-room:
		case <-ctx.Done():
			return
		}
	}
}

// run stores what lanes hand it until ctx ends.
func (m *mover) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		}
		for {
			reqs := m.take()
			if len(reqs) == 0 {
				break
			}
			m.store(ctx, reqs)
		}
	}
}

// take removes up to moverBatch items' worth of requests.
func (m *mover) take() []moveRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, i := 0, 0
	for i < len(m.pending) && (n == 0 || n+len(m.pending[i].items) <= moverBatch) {
		n += len(m.pending[i].items)
		i++
	}
	reqs := m.pending[:i:i]
	m.pending = m.pending[i:]
	m.items -= n
	close(m.room)
	m.room = make(chan struct{})
	return reqs
}

func (m *mover) store(ctx context.Context, reqs []moveRequest) {
	var moves []queue.Move
	for _, r := range reqs {
		for _, it := range r.items {
			ev := it.ev
			ev.Attempts = it.attempts
			ev.NotBefore = it.due
			moves = append(moves, queue.Move{Token: r.l.token, ID: moveID(r.l.token, it), Event: ev})
		}
	}
	parked, err := m.q.Park(ctx, moves)
	if err != nil && ctx.Err() == nil {
		m.log.Warn("Moving events to the backlog stream failed, trying again", "events", len(moves), "err", err)
	}
	i := 0
	for _, r := range reqs {
		var last uint64
		if err == nil {
			for range r.items {
				last = max(last, parked[i].Seq)
				i++
			}
		}
		r.l.movedOut(r.items, last, err)
	}
}

// moveID names one move of an item: the stream and sequence it came from
// and, for a backlog item moved again after a failed attempt, the attempt.
func moveID(token string, it *item) string {
	if it.src == fromEvents {
		return token + "/e" + strconv.FormatUint(it.ev.Seq, 10) + "/" + strconv.Itoa(it.attempts)
	}
	return token + "/b" + strconv.FormatUint(it.ev.Seq, 10) + "/" + strconv.Itoa(it.attempts)
}
