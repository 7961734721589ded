package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/hookline/hookline/internal/eventtype"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/report"
)

// scriptedAttempts answers attempts as a test says, per event id, and
// records the order of successful deliveries.
type scriptedAttempts struct {
	clock *clocktesting.FakeClock

	mu sync.Mutex
	// fail lists, per event id, the retry delays of the attempts that
	// fail before one succeeds.
	fail      map[string][]time.Duration
	delivered []string
	attempts  map[string]int
	// gate, when set, blocks every attempt until it is closed.
	gate chan struct{}
	// down, when set, fails every attempt with this retry delay.
	down time.Duration
}

func (s *scriptedAttempts) attempt(ctx context.Context, _ report.Key, _ *deliveryState, it *item) attempt {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := it.ev.Event.ID
	s.attempts[id]++
	now := s.clock.Now()
	if s.down > 0 {
		return attempt{verdict: retry, delay: s.down, outcome: &report.Outcome{Time: now, Class: "ConnectionError"}}
	}
	if delays := s.fail[id]; len(delays) > 0 {
		s.fail[id] = delays[1:]
		return attempt{verdict: retry, delay: delays[0], outcome: &report.Outcome{Time: now, StatusCode: 500, Class: "HTTPError"}}
	}
	s.delivered = append(s.delivered, id)
	return attempt{verdict: finished, outcome: &report.Outcome{Time: now, Success: true, StatusCode: 200}}
}

// waitDeliveredOnce waits for n deliveries and checks that they are
// evt-1 to evt-n, each once, in any order.
func (h *laneHarness) waitDeliveredOnce(n int) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("%d deliveries", n), func() bool { return len(h.script.deliveredIDs()) == n })
	got := h.script.deliveredIDs()
	slices.Sort(got)
	want := ids(1, n)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		h.t.Errorf("delivered %d events, want each of the %d once", len(got), n)
	}
}

func (s *scriptedAttempts) deliveredIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.delivered)
}

// laneHarness is one lane over a real embedded queue, with its own events
// published to the queue so the lane's moves and reads are real.
type laneHarness struct {
	t       *testing.T
	q       *queue.Queue
	clock   *clocktesting.FakeClock
	script  *scriptedAttempts
	env     *laneEnv
	lane    *lane
	workers sync.WaitGroup
	mu      sync.Mutex
	seq     uint64
}

// routed is the router's position: past the last event offered.
func (h *laneHarness) routed() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq + 1
}

func newLaneHarness(t *testing.T, memory int, st *deliveryState) *laneHarness {
	t.Helper()
	q := openQueue(t)
	clk := clocktesting.NewFakeClock(statusTestTime)
	h := &laneHarness{t: t, q: q, clock: clk,
		script: &scriptedAttempts{clock: clk, fail: map[string][]time.Duration{}, attempts: map[string]int{}}}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	m := newMover(q, clk, log)
	go m.run(ctx)
	h.env = &laneEnv{clock: clk, attempts: h.script, mover: m, queue: q, ctx: ctx, memory: memory,
		memoryRetry: 10 * time.Second, lagAge: time.Hour, lagEvents: 1000, position: func() uint64 { return h.routed() },
		onGone: func(report.Key, int64) {}, workers: &h.workers, log: log}
	h.lane = newLane(h.env, report.Key{Namespace: "team", Name: "orders", UID: "uid-1"}, nil, 1)
	h.lane.configure(st)
	t.Cleanup(func() {
		h.lane.stop()
		cancel()
		h.workers.Wait()
	})
	return h
}

func servedState(concurrency int, ordered bool) *deliveryState {
	return &deliveryState{accepted: true, generation: 1, concurrency: concurrency, ordered: ordered}
}

// typedState is servedState, unordered, for events of type order.created.
func typedState(t *testing.T, concurrency int) *deliveryState {
	st := servedState(concurrency, false)
	st.patternList = []string{"order.created"}
	st.patterns = mustPatterns(t, st.patternList)
	return st
}

// holdAttempts blocks every attempt until release is called.
func (h *laneHarness) holdAttempts() (release func()) {
	gate := make(chan struct{})
	h.script.mu.Lock()
	h.script.gate = gate
	h.script.mu.Unlock()
	return func() {
		h.script.mu.Lock()
		h.script.gate = nil
		h.script.mu.Unlock()
		close(gate)
	}
}

// offer publishes n events and offers them to the lane, as the router
// would.
func (h *laneHarness) offer(n int) {
	h.t.Helper()
	for range n {
		h.mu.Lock()
		h.seq++
		seq := h.seq
		h.mu.Unlock()
		id := fmt.Sprintf("evt-%d", seq)
		ev := queue.Event{ID: id, Namespace: "team", Type: "order.created", Time: statusTestTime, Data: []byte(`{}`)}
		if _, err := h.q.Publish(context.Background(), []queue.Event{ev}); err != nil {
			h.t.Fatal(err)
		}
		h.lane.offer(queue.Stored{Seq: seq, Event: ev, Stored: statusTestTime})
	}
}

// eventually polls cond until it holds; the test binary's timeout guards it.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 0 && i%1000 == 0 {
			t.Logf("still waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ids(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("evt-%d", i))
	}
	return out
}

func TestLaneDeliversAndCheckpoints(t *testing.T) {
	h := newLaneHarness(t, 100, servedState(4, false))
	h.offer(20)
	eventually(t, "20 deliveries", func() bool { return len(h.script.deliveredIDs()) == 20 })
	rec := h.lane.record("i-0", 21)
	if rec.Events.Floor != 21 || len(rec.Events.Done) != 0 || rec.Pending != 0 || rec.Moved != 0 {
		t.Errorf("checkpoint after all deliveries: %+v, want floor 21 and nothing pending", rec)
	}
	if rec.Totals.Delivered != 20 || rec.Totals.Failed != 0 {
		t.Errorf("totals delivered %d failed %d, want 20 and 0", rec.Totals.Delivered, rec.Totals.Failed)
	}
	got := h.script.deliveredIDs()
	slices.Sort(got)
	want := ids(1, 20)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("delivered %v, want each of %v once", got, want)
	}
}

func TestLaneRetriesInMemoryAndInTheBacklog(t *testing.T) {
	h := newLaneHarness(t, 100, servedState(1, false))
	h.script.fail["evt-1"] = []time.Duration{5 * time.Second} // waits in memory
	h.script.fail["evt-2"] = []time.Duration{2 * time.Hour}   // moves to the backlog
	// All three in memory before the first attempt, attempted in order:
	// evt-1 fails before evt-2 moves, so it waits in memory (once the
	// lane has moved an event, later retries follow it).
	release := h.holdAttempts()
	h.offer(3)
	release()
	eventually(t, "evt-3 delivered, evt-2 moved and evt-1 waiting", func() bool {
		rec := h.lane.record("i-0", 4)
		h.lane.mu.Lock()
		waiting := slices.ContainsFunc(h.lane.waiting, func(it *item) bool { return it.ev.Event.ID == "evt-1" })
		h.lane.mu.Unlock()
		// evt-1's retry is due 5 s from the clock's time when it failed:
		// the clock steps only once it waits.
		return slices.Contains(h.script.deliveredIDs(), "evt-3") && rec.Moved == 1 && waiting
	})
	rec := h.lane.record("i-0", 4)
	if rec.Events.Floor != 1 || rec.Pending != 1 {
		t.Errorf("with evt-1 waiting in memory: %+v, want floor 1 and 1 pending", rec.Events)
	}
	h.clock.Step(5 * time.Second)
	eventually(t, "evt-1 retried", func() bool { return slices.Contains(h.script.deliveredIDs(), "evt-1") })
	rec = h.lane.record("i-0", 4)
	if rec.Events.Floor != 4 || rec.Moved != 1 {
		t.Errorf("with only evt-2 in the backlog: events %+v moved %d, want floor 4 and 1 moved", rec.Events, rec.Moved)
	}
	if slices.Contains(h.script.deliveredIDs(), "evt-2") {
		t.Fatal("evt-2 was delivered before its retry was due")
	}
	h.clock.Step(2 * time.Hour)
	eventually(t, "evt-2 retried from the backlog", func() bool { return slices.Contains(h.script.deliveredIDs(), "evt-2") })
	eventually(t, "the backlog empty", func() bool { return h.lane.record("i-0", 4).Moved == 0 })
	rec = h.lane.record("i-0", 4)
	if rec.Totals.Delivered != 3 || rec.Totals.Failed != 2 {
		t.Errorf("totals delivered %d failed %d, want 3 and 2", rec.Totals.Delivered, rec.Totals.Failed)
	}
	if n := h.script.attempts["evt-2"]; n != 2 {
		t.Errorf("evt-2 attempted %d times, want 2", n)
	}
}

func TestHeldLaneMovesItsEventsAndResumesInOrder(t *testing.T) {
	st := servedState(1, true)
	held := *st
	held.suspended = "SuspendedBySpec"
	h := newLaneHarness(t, 100, &held)
	h.offer(10)
	eventually(t, "10 events moved", func() bool { return h.lane.record("i-0", 11).Moved == 10 })
	if got := h.script.deliveredIDs(); len(got) != 0 {
		t.Fatalf("a held lane delivered %v", got)
	}
	if rec := h.lane.record("i-0", 11); rec.Events.Floor != 11 {
		t.Errorf("events floor of a held lane = %d, want 11: its events moved out of the way", rec.Events.Floor)
	}
	h.lane.configure(st)
	h.offer(5) // behind the moved ones
	eventually(t, "15 deliveries", func() bool { return len(h.script.deliveredIDs()) == 15 })
	if got := h.script.deliveredIDs(); !slices.Equal(got, ids(1, 15)) {
		t.Errorf("delivered %v, want evt-1 to evt-15 in order", got)
	}
	eventually(t, "the backlog empty", func() bool { return h.lane.record("i-0", 16).Moved == 0 })
}

func TestOrderedLaneKeepsOrderBehindALongRetry(t *testing.T) {
	h := newLaneHarness(t, 100, servedState(1, true))
	h.script.fail["evt-2"] = []time.Duration{time.Hour, 3 * time.Second}
	h.offer(6)
	// evt-2 moves, and the events behind it with it; those offered once
	// the lane has read its moves back wait in memory behind evt-2.
	eventually(t, "evt-2 moved, the events behind it moved or waiting", func() bool {
		rec := h.lane.record("i-0", 7)
		return rec.Moved > 0 && rec.Moved+rec.Pending == 5
	})
	if got := h.script.deliveredIDs(); !slices.Equal(got, ids(1, 1)) {
		t.Fatalf("delivered %v before evt-2's retry was due, want only evt-1", got)
	}
	h.clock.Step(time.Hour)
	eventually(t, "evt-2 retried from the backlog, failed again and waiting", func() bool {
		h.script.mu.Lock()
		attempts := h.script.attempts["evt-2"]
		h.script.mu.Unlock()
		h.lane.mu.Lock()
		defer h.lane.mu.Unlock()
		// Its retry is due 3 s from the clock's time when it failed: the
		// clock steps only once it waits.
		return attempts == 2 && h.lane.inflight == 0 && h.lane.waiting.Len() == 1
	})
	// The second retry waits in memory; nothing behind it goes first.
	if got := h.script.deliveredIDs(); !slices.Equal(got, ids(1, 1)) {
		t.Fatalf("delivered %v while evt-2 waited for its retry, want only evt-1", got)
	}
	h.clock.Step(3 * time.Second)
	eventually(t, "6 deliveries", func() bool { return len(h.script.deliveredIDs()) == 6 })
	if got := h.script.deliveredIDs(); !slices.Equal(got, ids(1, 6)) {
		t.Errorf("delivered %v, want evt-1 to evt-6 in order", got)
	}
}

func TestLaneMemoryIsBounded(t *testing.T) {
	st := typedState(t, 2)
	h := newLaneHarness(t, 5, st)
	release := h.holdAttempts()
	h.offer(50)
	// Memory full: the lane fell behind, and the events it did not take
	// wait in the events stream, holding its floor.
	eventually(t, "the lane behind", func() bool {
		h.lane.mu.Lock()
		defer h.lane.mu.Unlock()
		return h.lane.behind
	})
	h.lane.mu.Lock()
	inMemory := len(h.lane.ready) + h.lane.waiting.Len() + h.lane.inflight
	h.lane.mu.Unlock()
	if inMemory > 5 {
		t.Errorf("%d events in memory, want at most 5", inMemory)
	}
	if rec := h.lane.record("i-0", 51); rec.Events.Floor != 1 || rec.Moved != 0 {
		t.Errorf("checkpoint of a lane behind: events %+v moved %d, want floor 1 and nothing moved", rec.Events, rec.Moved)
	}
	release()
	h.waitDeliveredOnce(50)
	eventually(t, "caught up", func() bool {
		h.lane.mu.Lock()
		defer h.lane.mu.Unlock()
		return !h.lane.behind
	})
	h.offer(1)
	eventually(t, "an event after catching up delivered", func() bool { return len(h.script.deliveredIDs()) == 51 })
	if rec := h.lane.record("i-0", 52); rec.Events.Floor != 52 || rec.Moved != 0 {
		t.Errorf("checkpoint after catching up: events %+v moved %d, want floor 52", rec.Events, rec.Moved)
	}
}

func TestLaneFarBehindMovesOn(t *testing.T) {
	st := typedState(t, 1)
	h := newLaneHarness(t, 5, st)
	h.env.lagEvents = 20
	release := h.holdAttempts()
	// The router is far ahead: it routed all 100 before the lane read
	// any of those it did not take.
	h.env.position = func() uint64 { return 101 }
	h.offer(100)
	// More than 20 behind the router: those events move out of the way.
	eventually(t, "events moved", func() bool { return h.lane.record("i-0", 101).Moved > 0 })
	release()
	eventually(t, "100 deliveries", func() bool { return len(h.script.deliveredIDs()) == 100 })
	eventually(t, "the backlog empty and the floor past the last", func() bool {
		rec := h.lane.record("i-0", 101)
		return rec.Moved == 0 && rec.Events.Floor == 101
	})
	if got := h.script.deliveredIDs(); !slices.Equal(got, ids(1, 100)) {
		t.Errorf("delivered %d events out of order or twice, want evt-1 to evt-100 in order with concurrency 1", len(got))
	}
}

func TestLaneResumesFromItsCheckpoint(t *testing.T) {
	h := newLaneHarness(t, 100, servedState(1, false))
	h.script.fail["evt-1"] = []time.Duration{time.Hour}
	h.offer(4)
	eventually(t, "3 delivered, evt-1 moved", func() bool {
		return len(h.script.deliveredIDs()) == 3 && h.lane.record("i-0", 5).Moved == 1
	})
	rec := h.lane.record("i-0", 5)
	h.lane.stop()

	// A new lane from the checkpoint: the events it lists as finished are
	// not taken again, and the moved one is read back.
	l := newLane(h.env, h.lane.key, &rec, rec.Events.Floor)
	l.configure(servedState(1, false))
	t.Cleanup(l.stop)
	for seq := uint64(1); seq <= 4; seq++ {
		if l.wants(seq) {
			t.Errorf("the resumed lane wants event %d, which its checkpoint finished", seq)
		}
	}
	if !l.wants(5) {
		t.Error("the resumed lane does not want the next event")
	}
	h.clock.Step(time.Hour)
	eventually(t, "evt-1 delivered from the backlog", func() bool { return slices.Contains(h.script.deliveredIDs(), "evt-1") })
	if got := l.record("i-0", 5); got.Totals.Delivered != 4 || got.Moved != 0 {
		t.Errorf("resumed lane's checkpoint: delivered %d moved %d, want 4 and 0", got.Totals.Delivered, got.Moved)
	}
}

func mustPatterns(t *testing.T, p []string) eventtype.Set {
	t.Helper()
	set, err := eventtype.CompileSet(p)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestCrowdedStreamRelievesOnlyLanesBelowTheLine: a crowded events stream
// moves what a lane holds of it only when the lane holds events below the
// relief line; a lane whose events are all above it keeps them in memory.
func TestCrowdedStreamRelievesOnlyLanesBelowTheLine(t *testing.T) {
	for _, tc := range []struct {
		name      string
		line      uint64
		wantMoved int64
	}{
		{name: "events below the line move", line: 5, wantMoved: 9},
		{name: "events at or above the line stay", line: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := typedState(t, 1)
			h := newLaneHarness(t, 100, st)
			release := h.holdAttempts()
			h.offer(10)
			// One event in delivery, nine waiting in memory.
			eventually(t, "one delivery under way", func() bool { return h.lane.busy() })
			h.lane.relieve(tc.line)
			eventually(t, "the moves stored", func() bool {
				h.lane.mu.Lock()
				defer h.lane.mu.Unlock()
				return h.lane.movesInFlight == 0
			})
			if got := h.lane.record("i-0", 11).Moved; got != tc.wantMoved {
				t.Errorf("moved %d events, want %d", got, tc.wantMoved)
			}
			release()
			eventually(t, "10 deliveries", func() bool { return len(h.script.deliveredIDs()) == 10 })
			if got := h.script.deliveredIDs(); !slices.Equal(got, ids(1, 10)) {
				t.Errorf("delivered %v, want evt-1 to evt-10 in order with concurrency 1", got)
			}
		})
	}
}

func (s *scriptedAttempts) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.attempts {
		n += c
	}
	return n
}

// TestBreakerProbesADeadEndpoint: once attempts in a row fail, a lane stops
// trying every event and sends one probe per retry delay; the first probe
// that succeeds lets every event through, each delivered once.
func TestBreakerProbesADeadEndpoint(t *testing.T) {
	const concurrency = 4
	h := newLaneHarness(t, 100, servedState(concurrency, false))
	h.script.mu.Lock()
	h.script.down = time.Second
	h.script.mu.Unlock()
	h.offer(50)
	settledGated := func() bool {
		h.lane.mu.Lock()
		defer h.lane.mu.Unlock()
		return h.lane.gated() && h.lane.inflight == 0 && h.lane.workers == 0
	}
	eventually(t, "the breaker open", settledGated)
	// The attempts under way when the breaker opened finish; no other
	// starts.
	n := h.script.total()
	if n < breakerThreshold || n > breakerThreshold+concurrency-1 {
		t.Fatalf("%d attempts before the breaker opened, want %d to %d of the 50 events", n, breakerThreshold, breakerThreshold+concurrency-1)
	}
	h.clock.Step(time.Second)
	eventually(t, "one probe", func() bool { return h.script.total() > n && settledGated() })
	if got := h.script.total(); got != n+1 {
		t.Errorf("%d attempts after the retry delay, want one probe (%d)", got, n+1)
	}
	h.script.mu.Lock()
	h.script.down = 0
	h.script.mu.Unlock()
	h.clock.Step(2 * time.Second)
	h.waitDeliveredOnce(50)
	if rec := h.lane.record("i-0", 51); rec.Totals.Delivered != 50 || rec.Totals.Failed != int64(n+1) {
		t.Errorf("totals delivered %d failed %d, want 50 and %d", rec.Totals.Delivered, rec.Totals.Failed, n+1)
	}
}
