package dispatcher

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestWaitTurn: a delivery waiting for its rate limit keeps its message
// in progress, so JetStream does not hand it to another worker.
func TestWaitTurn(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	lim := rate.NewLimiter(rate.Every(25*time.Second), 1)
	var marks atomic.Int32
	inProgress := func() error { marks.Add(1); return nil }

	if !waitTurn(context.Background(), clk, lim, inProgress) || marks.Load() != 0 {
		t.Fatalf("the first request waited (marks %d)", marks.Load())
	}
	done := make(chan bool)
	go func() { done <- waitTurn(context.Background(), clk, lim, inProgress) }()
	for i := range 2 {
		waitForWaiters(t, clk)
		clk.Step(inProgressEvery)
		waitForMarks(t, &marks, int32(i+1))
	}
	waitForWaiters(t, clk)
	clk.Step(inProgressEvery)
	if !<-done {
		t.Fatal("waitTurn gave up")
	}
	if n := marks.Load(); n != 2 {
		t.Errorf("marked in progress %d times over a 25s wait, want 2", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- waitTurn(ctx, clk, lim, inProgress) }()
	waitForWaiters(t, clk)
	cancel()
	if <-done {
		t.Error("waitTurn reported a turn after its context ended")
	}
}

func waitForWaiters(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute) // far above any plausible wait
	for !clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("nothing waits on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}

func waitForMarks(t *testing.T, marks *atomic.Int32, want int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute) // far above any plausible wait
	for marks.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("marked %d times, want %d", marks.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}
