package dispatcher

import (
	"container/heap"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/report"
)

// A lane is one subscription served by this instance: the events routed
// to it wait in memory, up to a bound, and are delivered by goroutines
// that exist only while there is work, at most the subscription's
// concurrency of them. A lane has no queue consumer of its own.
//
// A lane whose memory is full falls behind: the router no longer hands it
// events, and the lane reads the events stream itself, from the first one
// it did not take, as it makes room, until it has caught up with the
// router. The events it has not taken stay in the events stream, where
// they hold the floor below which the stream is purged, but only for a
// while: those older than a bound, or further behind than another, move
// on.
//
// What cannot wait moves out of the events stream's way into the
// subscription's part of the backlog stream: retries that wait long,
// events that come while the lane is held (suspended, not accepted,
// awaiting validation) or that are too far behind, and, once the lane has
// moved events, every later one too, so that they keep their order. A
// lane with moved events reads them back in order when it can deliver,
// and takes new events into memory again once it has read them all.
//
// A lane tracks which of its events are finished (delivered, filtered out,
// dead-lettered, or moved) in each stream, and its delivery totals; a
// checkpoint stores both together, so that after a crash the events
// finished since the last checkpoint are delivered again and counted
// again, and nothing else.

// source tells which stream an item was read from.
type source uint8

const (
	fromEvents source = iota
	fromBacklog
)

// item is one event waiting for, or in, delivery to one lane.
type item struct {
	src source
	ev  queue.Stored
	// attempts made so far.
	attempts int
	// due is when a retry may be made; zero for now.
	due   time.Time
	index int // in the waiting heap
}

// verdict is what one attempt decided for an item.
type verdict int

const (
	// finished: delivered, filtered out or dead-lettered.
	finished verdict = iota
	// retry after the delay the attempt set.
	retry
	// hold the lane: the endpoint is gone (410) or the lane is no longer
	// deliverable; the item was not finished.
	hold
)

// attempt is one delivery attempt's outcome as the lane needs it.
type attempt struct {
	verdict verdict
	delay   time.Duration
	// outcome of the attempt, nil when none was made (filtered, held).
	outcome *report.Outcome
	// filterError is set when the filter failed at runtime.
	filterError string
}

// attempter makes one attempt of it for the subscription st describes;
// the dispatcher's deliverer is the one used.
type attempter interface {
	attempt(ctx context.Context, key report.Key, st *deliveryState, it *item) attempt
}

// laneEnv is what every lane shares.
type laneEnv struct {
	clock    Clock
	attempts attempter
	mover    *mover
	queue    *queue.Queue
	// ctx bounds deliveries; it outlives the run by the shutdown grace.
	ctx context.Context
	// memory bounds the items one lane keeps in memory.
	memory int
	// memoryRetry is the longest retry delay waited in memory.
	memoryRetry time.Duration
	// lagAge and lagEvents bound how far a lane that fell behind may lag
	// before what it has not taken moves to the backlog stream: by the age
	// of the events, and by how many sequences the router is ahead.
	lagAge    time.Duration
	lagEvents uint64
	// reliefLine is, while the events stream is filling up, the sequence
	// below which what a lane holds of it moves on at once; 0 otherwise.
	reliefLine func() uint64
	// position is the router's position: every event before it was
	// routed.
	position func() uint64
	// onGone is told when an attempt found the endpoint gone.
	onGone func(key report.Key, generation int64)
	// workers counts delivery goroutines of every lane, for shutdown.
	workers *sync.WaitGroup
	log     interface{ Warn(string, ...any) }
}

// laneRecord is a lane's checkpoint.
type laneRecord struct {
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Owner is the instance serving the lane; "" once it let it go.
	Owner      string `json:"owner"`
	Generation int64  `json:"generation"`
	// GoneGeneration is the generation at which the endpoint answered
	// 410 Gone.
	GoneGeneration int64 `json:"goneGeneration,omitempty"`
	Events         mark  `json:"events"`
	Backlog        mark  `json:"backlog"`
	// Pending is how many routed events wait in memory or in delivery;
	// Moved how many wait in the backlog stream.
	Pending int64         `json:"pending"`
	Moved   int64         `json:"moved"`
	Totals  report.Totals `json:"totals"`
}

type lane struct {
	key   report.Key
	token string
	env   *laneEnv

	mu      sync.Mutex
	st      *deliveryState
	held    bool
	stopped bool
	ready   []*item
	waiting waitHeap
	timer   clock.Timer
	// inflight counts items being attempted; workers the goroutines.
	inflight, workers int
	events, backlog   progress
	// resume is the checkpoint the lane started from: events it lists as
	// finished are not routed again.
	resume laneRecord
	// start is the first events-stream sequence routed to the lane.
	start uint64
	// behind is set while the lane reads the events stream itself (see
	// above); next is the sequence it reads next, and skippedTo is past
	// the last event the router offered meanwhile.
	behind          bool
	next, skippedTo uint64
	// skipped counts the events the router offered while the lane was
	// behind that it has not read itself yet: they wait in the events
	// stream, and count in its backlog.
	skipped int64
	// frozen, once set, is the first sequence the lane did not take
	// after it was stopped or removed from the router: its checkpoints
	// never claim more, so the instance that takes it over, or the next
	// start, delivers the rest.
	frozen uint64
	// moving is set once events move to the backlog: later ones follow
	// until the lane has read them all back.
	moving        bool
	movesInFlight int
	moved         int64
	// lastMoved is the highest backlog sequence a move of this lane
	// stored (or found already stored); drained is set when the last
	// moved event read back had nothing after it in the stream.
	lastMoved uint64
	drained   bool
	// backlogNext is the next backlog sequence to read.
	backlogNext uint64
	reading     context.CancelFunc
	// room is signalled when an item leaves memory.
	room chan struct{}

	// failStreak counts attempts in a row that failed and will be
	// retried; from breakerThreshold on, the breaker is open until
	// openUntil: no attempt starts before then, and after it one at a time
	// (a probe) until one succeeds.
	failStreak int
	openUntil  time.Time
	// breakerTimer kicks the lane at armedFor, the openUntil it was armed
	// for.
	breakerTimer clock.Timer
	armedFor     time.Time

	totals         report.Totals
	goneGeneration int64
	dirty          bool
}

// breakerThreshold is how many attempts in a row must fail before a lane
// stops trying every event and probes its endpoint with one at a time, each
// after the retry delay the last failure set: a dead endpoint costs one
// attempt per delay rather than one per event.
const breakerThreshold = 5

func newLane(env *laneEnv, key report.Key, rec *laneRecord, start uint64) *lane {
	l := &lane{key: key, token: queue.SubscriptionToken(key.UID), env: env, start: start, room: make(chan struct{}, 1), dirty: true}
	if rec != nil {
		l.resume = *rec
		l.totals = rec.Totals
		l.goneGeneration = rec.GoneGeneration
		l.moved = rec.Moved
		l.backlogNext = max(rec.Backlog.Floor, 1)
		if rec.Moved > 0 {
			l.moving = true
		}
	}
	if l.backlogNext == 0 {
		l.backlogNext = 1
	}
	return l
}

// wants says whether the event at seq of the events stream is for this
// lane to take: not before its start, and not finished by the checkpoint
// it resumed from.
func (l *lane) wants(seq uint64) bool {
	return seq >= l.start && l.resume.Events.needs(seq)
}

// configure applies a new delivery state: a held lane moves what it holds
// out of memory; a lane that may deliver again reads back what it moved.
func (l *lane) configure(st *deliveryState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st != nil && l.st.generation != st.generation {
		// A new spec may carry a new filter: earlier runtime errors no
		// longer describe it; and a new endpoint: the breaker starts
		// closed.
		l.totals.FilterErrors, l.totals.LastFilterError = 0, ""
		l.failStreak, l.openUntil = 0, time.Time{}
	}
	l.st = st
	l.dirty = true
	l.held = !st.accepted || st.suspended != "" || st.awaitingValidation
	if l.held {
		// The clock of sustained failure stops while deliveries are held,
		// and starts anew when they resume.
		l.totals.FailingSince = time.Time{}
		l.stopReading()
		l.moveAll()
		return
	}
	l.maybeRead()
	l.kick()
}

// offer takes an event routed to the lane.
func (l *lane) offer(ev queue.Stored) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		l.freezeLocked(ev.Seq)
		return
	}
	if l.behind {
		// The lane reads it itself when it gets there.
		l.skippedTo = max(l.skippedTo, ev.Seq+1)
		l.skipped++
		return
	}
	if ev.Seq < l.next {
		// Read by the lane itself as it caught up, just ahead of the
		// router.
		return
	}
	if !l.held && !l.moving && l.full() {
		l.fallBehind(ev.Seq)
		l.skippedTo = ev.Seq + 1
		l.skipped++
		return
	}
	l.take(ev)
}

// take keeps an event for delivery: in memory, or in the backlog stream
// when the lane is held or has moved events. Called with l.mu held.
func (l *lane) take(ev queue.Stored) {
	l.events.insert(ev.Seq)
	l.dirty = true
	it := &item{src: fromEvents, ev: ev}
	if l.held || l.moving {
		l.move([]*item{it})
		return
	}
	l.ready = append(l.ready, it)
	l.kick()
}

// fallBehind makes the lane read the events stream itself from sequence
// from. Called with l.mu held.
func (l *lane) fallBehind(from uint64) {
	l.behind, l.next, l.skippedTo = true, from, from
	l.dirty = true
	go l.catchUp(l.env.ctx, from)
}

// full says whether memory holds as many items as it may.
func (l *lane) full() bool {
	return len(l.ready)+l.waiting.Len()+l.inflight >= l.env.memory
}

func (l *lane) concurrency() int {
	if l.st == nil {
		return 1
	}
	return max(l.st.concurrency, 1)
}

// limit is how many attempts may be under way: the concurrency, or one
// (the probe) while the breaker is open. Called with l.mu held.
func (l *lane) limit() int {
	if !l.openUntil.IsZero() {
		return 1
	}
	return l.concurrency()
}

// gated says whether the open breaker holds back every attempt now.
// Called with l.mu held.
func (l *lane) gated() bool {
	return !l.openUntil.IsZero() && l.env.clock.Now().Before(l.openUntil)
}

// armBreaker starts delivery again once the breaker lets a probe through,
// unless a timer for that moment is set already (every event routed to a
// gated lane kicks it). Called with l.mu held.
func (l *lane) armBreaker() {
	if l.breakerTimer != nil {
		if l.armedFor.Equal(l.openUntil) {
			return
		}
		l.breakerTimer.Stop()
	}
	l.armedFor = l.openUntil
	// On its own goroutine, as in schedule.
	l.breakerTimer = l.env.clock.AfterFunc(max(l.openUntil.Sub(l.env.clock.Now()), 0), func() {
		go func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.kick()
		}()
	})
}

// trip records a failed attempt that will be retried after delay, and
// opens the breaker once enough failed in a row. Called with l.mu held.
func (l *lane) trip(delay time.Duration) {
	l.failStreak++
	if l.failStreak >= breakerThreshold {
		l.openUntil = l.env.clock.Now().Add(delay)
	}
}

// reset closes the breaker after a successful attempt. Called with l.mu
// held.
func (l *lane) reset() {
	l.failStreak = 0
	if !l.openUntil.IsZero() {
		l.openUntil = time.Time{}
		if l.breakerTimer != nil {
			l.breakerTimer.Stop()
		}
		l.kick()
	}
}

// kick starts delivery goroutines for the ready items. Called with l.mu
// held.
func (l *lane) kick() {
	if l.held || l.stopped || l.st == nil {
		return
	}
	if l.st.ordered && l.waiting.Len() > 0 {
		// The next event waits for the retry of the one before it.
		return
	}
	if l.gated() {
		l.armBreaker()
		return
	}
	for len(l.ready) > l.workers && l.workers < l.limit() {
		l.workers++
		l.env.workers.Add(1)
		go l.work()
	}
}

func (l *lane) work() {
	defer l.env.workers.Done()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.held || l.stopped || len(l.ready) == 0 || (l.st.ordered && l.waiting.Len() > 0) || l.env.ctx.Err() != nil ||
			l.workers > l.limit() || l.gated() {
			l.workers--
			if l.gated() && l.workers == 0 {
				l.armBreaker()
			}
			return
		}
		it := l.ready[0]
		l.ready[0] = nil
		l.ready = l.ready[1:]
		st := l.st
		l.inflight++
		l.mu.Unlock()
		a := l.env.attempts.attempt(l.env.ctx, l.key, st, it)
		l.mu.Lock()
		l.inflight--
		l.settle(it, st, a)
	}
}

// settle applies an attempt's verdict. Called with l.mu held.
func (l *lane) settle(it *item, st *deliveryState, a attempt) {
	if a.outcome != nil {
		l.totals = report.Add(l.totals, *a.outcome)
		it.attempts++
		l.dirty = true
	}
	if a.filterError != "" {
		l.totals = report.AddFilterError(l.totals, a.filterError)
		l.dirty = true
	}
	switch {
	case a.outcome != nil && a.outcome.Success:
		l.reset()
	case a.outcome != nil && a.verdict == retry:
		l.trip(a.delay)
	}
	switch a.verdict {
	case finished:
		l.finish(it)
	case retry:
		it.due = l.env.clock.Now().Add(a.delay)
		if l.stopped {
			return
		}
		// An ordered lane's event read back from the backlog waits in
		// memory however long: moved again, it would go behind the
		// events after it.
		keep := st.ordered && it.src == fromBacklog
		if !keep && (a.delay > l.env.memoryRetry || l.moving || l.held) {
			if st.ordered {
				// The events behind it keep their place behind it.
				l.moveAll(it)
			} else {
				l.move([]*item{it})
			}
			return
		}
		heap.Push(&l.waiting, it)
		l.schedule()
	case hold:
		if l.stopped {
			return
		}
		l.ready = slices.Insert(l.ready, 0, it)
		if a.outcome != nil {
			// Gone: hold at once rather than try the next event; the
			// subscription's state follows.
			l.held = true
			l.goneGeneration = st.generation
			l.dirty = true
			l.stopReading()
			l.moveAll()
			l.env.onGone(l.key, st.generation)
		}
	}
	l.signalRoom()
}

// finish records an item as done in its stream. Called with l.mu held.
func (l *lane) finish(it *item) {
	if it.src == fromEvents {
		l.events.finish(it.ev.Seq)
	} else {
		l.backlog.finish(it.ev.Seq)
		// Below zero for a moment when an event is read back before
		// its mover says it is stored; set right when reading ends.
		l.moved--
	}
	l.dirty = true
	l.signalRoom()
}

func (l *lane) signalRoom() {
	select {
	case l.room <- struct{}{}:
	default:
	}
}

// schedule arms the timer for the earliest waiting retry. Called with l.mu
// held.
func (l *lane) schedule() {
	if l.waiting.Len() == 0 {
		return
	}
	d := l.waiting[0].due.Sub(l.env.clock.Now())
	if l.timer != nil {
		l.timer.Stop()
	}
	// On its own goroutine: a fake clock runs the function while it holds
	// its own lock, which wake's reading of the time would wait for.
	l.timer = l.env.clock.AfterFunc(max(d, 0), func() { go l.wake() })
}

// wake moves the retries that are due to the front of the ready items.
func (l *lane) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.env.clock.Now()
	var due []*item
	for l.waiting.Len() > 0 && !l.waiting[0].due.After(now) {
		due = append(due, heap.Pop(&l.waiting).(*item))
	}
	l.ready = slices.Insert(l.ready, 0, due...)
	l.schedule()
	l.kick()
}

// moveAll moves the items in memory (first, if given, goes first) to the
// backlog stream, in order. An ordered lane keeps those it read back from
// the backlog: they come before everything the backlog still holds, and
// moved again they would go behind it. Called with l.mu held.
func (l *lane) moveAll(first ...*item) {
	var items, kept []*item
	keep := func(it *item) bool { return l.st != nil && l.st.ordered && it.src == fromBacklog }
	for _, it := range first {
		if keep(it) {
			kept = append(kept, it)
		} else {
			items = append(items, it)
		}
	}
	// Waiting retries were due before the ready items behind them.
	var waiting []*item
	for l.waiting.Len() > 0 {
		waiting = append(waiting, heap.Pop(&l.waiting).(*item))
	}
	var ready []*item
	for _, it := range waiting {
		if keep(it) {
			heap.Push(&l.waiting, it)
		} else {
			items = append(items, it)
		}
	}
	for _, it := range l.ready {
		if keep(it) {
			ready = append(ready, it)
		} else {
			items = append(items, it)
		}
	}
	for _, it := range kept {
		heap.Push(&l.waiting, it)
	}
	l.ready = ready
	if l.timer != nil {
		l.timer.Stop()
	}
	l.schedule()
	if len(items) > 0 {
		l.move(items)
	}
}

// move hands items to the mover; they stay pending in their stream until
// the moved copies are durable. Called with l.mu held.
func (l *lane) move(items []*item) {
	l.moving = true
	l.movesInFlight += len(items)
	l.env.mover.add(l, items)
}

// movedOut is told by the mover that items are durable in the backlog
// stream, the last at sequence last (err nil), or that moving them failed,
// in which case they are moved again later. An item stored already, by a
// try that failed before it heard back or by the instance that ran the
// lane before a crash, counts as moved too: neither counted it.
func (l *lane) movedOut(items []*item, last uint64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.movesInFlight -= len(items)
	if err != nil {
		if !l.stopped {
			l.movesInFlight += len(items)
			l.env.mover.retryLater(l, items)
		}
		return
	}
	for _, it := range items {
		l.finish(it)
	}
	l.moved += int64(len(items))
	l.lastMoved = max(l.lastMoved, last)
	l.dirty = true
	if l.reading != nil && l.backlogRead() {
		// The reader read these before the mover heard they were
		// stored, and waits for more that will not come.
		l.stopReading()
		return
	}
	l.maybeRead()
}

// maybeRead starts reading the moved events back when the lane may
// deliver. Called with l.mu held.
func (l *lane) maybeRead() {
	if l.held || l.stopped || l.reading != nil || l.behind || (l.moved <= 0 && l.movesInFlight == 0) {
		return
	}
	if l.moved <= 0 {
		// Moves in flight: reading starts once they are stored.
		return
	}
	ctx, cancel := context.WithCancel(l.env.ctx)
	l.reading = cancel
	l.drained = false
	from := l.backlogNext
	go l.readBacklog(ctx, from)
}

// backlogRead says whether every moved event is in memory now or
// finished: the stream held nothing after the last one read when it was
// read, no move is on its way there, and every move stored since is
// behind it. If so the lane takes new events into memory again. Called
// with l.mu held.
func (l *lane) backlogRead() bool {
	if l.movesInFlight != 0 || !l.drained || l.lastMoved >= l.backlogNext {
		return false
	}
	l.moving = false
	l.moved = int64(l.backlog.count())
	return true
}

func (l *lane) stopReading() {
	if l.reading != nil {
		l.reading()
		l.reading = nil
	}
}

var errCaughtUp = errors.New("caught up")

// lagRecheck is how often a lane behind that has no room looks at whether
// the event it waits to take has become too old or too far behind.
const lagRecheck = time.Second

// readBacklog reads the lane's moved events back into memory, waiting for
// room, until it has read them all and nothing is on its way there; the
// lane then takes new events into memory again.
func (l *lane) readBacklog(ctx context.Context, from uint64) {
	err := l.env.queue.ReadBacklog(ctx, l.token, from, func(ev queue.Stored) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		for l.full() && ctx.Err() == nil {
			l.mu.Unlock()
			select {
			case <-l.room:
			case <-ctx.Done():
			}
			l.mu.Lock()
		}
		if ctx.Err() != nil || l.stopped {
			return ctx.Err()
		}
		l.backlogNext = ev.Seq + 1
		l.drained = ev.Pending == 0
		if l.resume.Backlog.needs(ev.Seq) {
			l.backlog.insert(ev.Seq)
			it := &item{src: fromBacklog, ev: ev, attempts: ev.Attempts, due: ev.NotBefore}
			if it.due.After(l.env.clock.Now()) {
				heap.Push(&l.waiting, it)
				l.schedule()
			} else {
				l.ready = append(l.ready, it)
			}
			l.dirty = true
			l.kick()
		}
		if l.backlogRead() {
			return errCaughtUp
		}
		return nil
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if ctx.Err() == nil {
		l.reading = nil
	}
	if err != nil && !errors.Is(err, errCaughtUp) && ctx.Err() == nil {
		l.env.log.Warn("Reading a subscription's backlog failed", "subscription", l.key.Namespace+"/"+l.key.Name, "err", err)
	}
}

// freeze records that the lane takes no event from pos on.
func (l *lane) freeze(pos uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.freezeLocked(pos)
}

func (l *lane) freezeLocked(pos uint64) {
	if pos != 0 && (l.frozen == 0 || pos < l.frozen) {
		l.frozen = pos
	}
}

// stop ends the lane: no more deliveries start; those in flight finish.
func (l *lane) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	l.stopReading()
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.breakerTimer != nil {
		l.breakerTimer.Stop()
	}
}

// record is the lane's checkpoint, given that every event before pos has
// been routed. It clears the lane's dirty mark.
func (l *lane) record(owner string, pos uint64) laneRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dirty = false
	if l.behind {
		pos = l.next
	}
	if l.frozen != 0 {
		pos = min(pos, l.frozen)
	}
	pos = max(pos, l.start)
	rec := laneRecord{
		UID: l.key.UID, Namespace: l.key.Namespace, Name: l.key.Name, Owner: owner,
		GoneGeneration: l.goneGeneration,
		Events:         l.events.mark(pos),
		Backlog:        l.backlog.mark(l.backlogNext),
		Pending:        int64(l.events.count()) + l.skipped,
		Moved:          max(l.moved, 0),
		Totals:         l.totals,
	}
	if l.st != nil {
		rec.Generation = l.st.generation
	}
	// What the lane resumed from and has not passed yet stays finished.
	rec.Events.Done = mergeDone(rec.Events.Done, l.resume.Events, rec.Events.Floor)
	rec.Backlog.Done = mergeDone(rec.Backlog.Done, l.resume.Backlog, rec.Backlog.Floor)
	return rec
}

// floor is the lowest events-stream sequence the lane still needs.
func (l *lane) floor(pos uint64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.behind {
		pos = l.next
	}
	if l.frozen != 0 {
		pos = min(pos, l.frozen)
	}
	return l.events.mark(max(pos, l.start)).Floor
}

// busy says whether deliveries or moves of the lane are under way.
func (l *lane) busy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight > 0 || l.movesInFlight > 0
}

// isDirty says whether the lane changed since its last checkpoint.
func (l *lane) isDirty() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dirty
}

// backlogFloor is the lowest backlog sequence the lane still needs.
func (l *lane) backlogFloor() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.backlog.mark(l.backlogNext).Floor
}

// mergeDone adds to done the sequences a resumed-from mark lists as
// finished at or above floor.
func mergeDone(done []uint64, resumed mark, floor uint64) []uint64 {
	for _, s := range resumed.Done {
		if s >= floor {
			if i, found := slices.BinarySearch(done, s); !found {
				done = slices.Insert(done, i, s)
			}
		}
	}
	return done
}

// waitHeap orders waiting retries by when they are due.
type waitHeap []*item

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].ev.Seq < h[j].ev.Seq
	}
	return h[i].due.Before(h[j].due)
}
func (h waitHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *waitHeap) Push(x any)   { it := x.(*item); it.index = len(*h); *h = append(*h, it) }
func (h *waitHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

// matches says whether an event of type typ is for the lane, by its type
// patterns. Held lanes take their events too, to keep them.
func (l *lane) matches(typ string) bool {
	l.mu.Lock()
	st := l.st
	l.mu.Unlock()
	return st != nil && st.patternList != nil && st.patterns.Match(typ)
}

// catchUp reads the events stream from sequence from, taking the lane's
// events as it makes room for them, until it reaches the router, which
// then hands the lane its events again. Events too old or too far behind
// move to the backlog stream without waiting for room. A lane taken over
// from an instance that stopped starts this way, from its checkpoint.
func (l *lane) catchUp(ctx context.Context, from uint64) {
	// A wait for room ends now and then to look again: the event ages,
	// and the router moves on, while nothing makes room.
	recheck := l.env.clock.NewTicker(lagRecheck)
	defer recheck.Stop()
	err := l.env.queue.ReadFor(ctx, l.key.Namespace, l.token, from, func(ev queue.Stored) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.stopped {
			l.freezeLocked(ev.Seq)
			return errCaughtUp
		}
		for !l.held && !l.moving && l.full() && !l.tooFarBehind(ev) && ctx.Err() == nil && !l.stopped {
			l.mu.Unlock()
			select {
			case <-l.room:
			case <-recheck.C():
			case <-ctx.Done():
			}
			l.mu.Lock()
		}
		if ctx.Err() != nil || l.stopped {
			return errCaughtUp
		}
		if !l.held && !l.moving && l.full() {
			// Too far behind: what it has not taken moves on, and the
			// events after it follow.
			l.moving = true
		}
		l.next = ev.Seq + 1
		if l.wants(ev.Seq) && l.takes(ev) {
			if ev.Seq < l.skippedTo && l.skipped > 0 {
				l.skipped--
			}
			l.take(ev)
		}
		if l.next >= max(l.env.position(), l.skippedTo) {
			l.behind = false
			l.skipped = 0
			l.dirty = true
			l.maybeRead()
			return errCaughtUp
		}
		return nil
	})
	if err != nil && !errors.Is(err, errCaughtUp) && ctx.Err() == nil {
		l.env.log.Warn("Reading the events stream for a subscription that fell behind failed", "subscription", l.key.Namespace+"/"+l.key.Name, "err", err)
	}
}

// takes says whether an event the lane read itself is one the router would
// have handed it. Called with l.mu held.
func (l *lane) takes(ev queue.Stored) bool {
	if ev.Direct != "" {
		return ev.Direct == l.token
	}
	st := l.st
	return ev.Event.Namespace == l.key.Namespace && st != nil && st.patternList != nil && st.patterns.Match(ev.Event.Type)
}

// tooFarBehind says whether an event is older, or further behind the
// router, than a lane that fell behind may let events wait in the events
// stream.
func (l *lane) tooFarBehind(ev queue.Stored) bool {
	if line := l.relief(); line != 0 && ev.Seq < line {
		return true
	}
	if l.env.lagAge > 0 && l.env.clock.Since(ev.Stored) > l.env.lagAge {
		return true
	}
	pos := l.env.position()
	return l.env.lagEvents > 0 && pos > ev.Seq && pos-ev.Seq > l.env.lagEvents
}

// relieve moves what the lane keeps in memory to the backlog stream when
// it holds back the events stream below line: it fell behind there, or
// events of the stream from there wait in memory. Called while the events
// stream is crowded, so that its purge can pass them.
func (l *lane) relieve(line uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped || l.held {
		return
	}
	lowest, pending := l.events.lowest()
	if (l.behind && l.next < line) || (pending && lowest < line) {
		l.moveAll()
		// A lane behind waiting for room looks again: the events it has
		// not read move now.
		l.signalRoom()
	}
}

// relief is the sequence below which what the lane holds of the events
// stream moves on at once; 0 while the stream is not crowded.
func (l *lane) relief() uint64 {
	if l.env.reliefLine == nil {
		return 0
	}
	return l.env.reliefLine()
}

// gone is the generation at which the endpoint answered 410 Gone.
func (l *lane) gone() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.goneGeneration
}
