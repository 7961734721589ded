package report

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// TestWriterAppliesManyStatuses writes the Accepted condition of 500
// subscriptions on one tick, as a dispatcher does when they arrive, once
// with one apply at a time and once with the default number in flight,
// and logs how long each tick took. Each must write every subscription
// exactly once, and never have more applies in flight than allowed.
func TestWriterAppliesManyStatuses(t *testing.T) {
	const n = 500
	ns := newNamespace(t)
	objs := make([]*hooklinev1.WebhookSubscription, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			objs[i] = createSubscription(t, ns, fmt.Sprintf("sub-%04d", i))
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	byName := make(map[string]*hooklinev1.WebhookSubscription, n)
	keys := make([]Key, n)
	for i, o := range objs {
		byName[o.Name] = o
		keys[i] = keyOf(o)
	}

	for round, inFlight := range []int{1, DefaultMaxInFlight} {
		message := fmt.Sprintf("Served, round %d", round+1)
		clk := clocktesting.NewFakeClock(suiteStart)
		// The lookup serves the objects from memory, as the dispatcher's
		// informer cache does, so the tick measures the writes alone.
		// Each round is a new leader that finds a different message to
		// write.
		w := NewWriter(Options{
			Client:      dyn,
			Interval:    testInterval,
			Clock:       clk,
			MaxInFlight: inFlight,
			Source: memorySource{keys: keys, lookup: func(ns, name string) (State, bool) {
				o, ok := byName[name]
				return State{Object: o, Accepted: true, AcceptedReason: hooklinev1.ReasonAccepted, AcceptedMessage: message}, ok
			}},
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		eventually(t, clk.HasWaiters, "the writer to wait for its first tick")
		statusPatches.resetMaxInFlight()
		start := time.Now()
		clk.Step(testInterval)
		eventually(t, func() bool { return w.Writes() >= n && clk.HasWaiters() }, "the tick to write %d statuses", n)
		took := time.Since(start)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
		most := statusPatches.resetMaxInFlight()
		t.Logf("up to %d applies in flight (%d seen at once): one tick applied %d statuses in %s (%.0f/s)", inFlight, most,
			w.Writes(), took.Round(time.Millisecond), float64(w.Writes())/took.Seconds())
		if most > int64(inFlight) {
			t.Errorf("%d status patches were in flight at once, want at most %d", most, inFlight)
		}

		if got := w.Writes(); got != n {
			t.Errorf("%d in flight: writes = %d, want %d", inFlight, got, n)
		}
		for _, name := range []string{"sub-0000", "sub-0250", fmt.Sprintf("sub-%04d", n-1)} {
			if p := statusPatches.get(ns, name); p != round+1 {
				t.Errorf("%d in flight: %s has had %d status patches, want %d", inFlight, name, p, round+1)
			}
			if c := condition(t, getSubscription(t, ns, name), hooklinev1.ConditionAccepted); c.Status != "True" || c.Message != message {
				t.Errorf("%d in flight: %s: Accepted = %+v, want True, %q", inFlight, name, c, message)
			}
		}
	}
}

// TestWriterBeforeTick: what every lookup of a tick shares (the queue's
// backlogs) is read once at the start of the tick, before its first
// lookup, and each status written carries what was read for its tick.
func TestWriterBeforeTick(t *testing.T) {
	ns := newNamespace(t)
	names := []string{"a", "b", "c"}
	for _, n := range names {
		createSubscription(t, ns, n)
	}
	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	for _, n := range names {
		h.setState(ns, n, State{Accepted: true})
	}
	src := &countingSource{harness: h}
	h.writer.source = src
	h.start()
	for tick := int64(1); tick <= 2; tick++ {
		h.tick()
		if src.reads.Load() != tick || src.early.Load() != 0 {
			t.Fatalf("after %d ticks: BeforeTick ran %d times, %d lookups came before it; want once per tick, before every lookup",
				tick, src.reads.Load(), src.early.Load())
		}
		for _, n := range names {
			if d := getSubscription(t, ns, n).Status.Delivery; d == nil || d.Backlog != 10*tick {
				t.Errorf("tick %d: %s: status.delivery = %+v, want the backlog read for the tick, %d", tick, n, d, 10*tick)
			}
		}
	}
}

// memorySource serves fixed keys and states from memory.
type memorySource struct {
	keys   []Key
	lookup func(ns, name string) (State, bool)
}

func (m memorySource) Keys() []Key                                       { return m.keys }
func (m memorySource) BeforeTick(context.Context)                        {}
func (m memorySource) Lookup(ns, name string) (State, bool)              { return m.lookup(ns, name) }
func (m memorySource) Suspended(*hooklinev1.WebhookSubscription, string) {}

// countingSource is the harness' source that counts BeforeTick calls, the
// lookups made before the first one, and reports a backlog that tells
// which tick read it.
type countingSource struct {
	*harness
	reads, early atomic.Int64
}

func (c *countingSource) BeforeTick(context.Context) { c.reads.Add(1) }

func (c *countingSource) Lookup(ns, name string) (State, bool) {
	st, ok := c.harness.Lookup(ns, name)
	r := c.reads.Load()
	if r == 0 {
		c.early.Add(1)
	}
	st.Backlog = 10 * r
	return st, ok
}
