package testenv

import (
	"context"
	"time"
)

// deadliner is what GiveUpAt needs of a *testing.T, so that this package,
// which the playground links too, does not import testing.
type deadliner interface {
	Deadline() (time.Time, bool)
}

// giveUpMargin is how long before the test binary's -timeout a wait gives
// up, so that the failure says what was awaited instead of the binary
// panicking with every goroutine's stack.
const giveUpMargin = 30 * time.Second

// GiveUpAt is when a wait in the test t stops and fails. Tests bound no
// build, start or wait by the wall clock: a slow or busy machine only makes
// them take longer, and the test binary's own -timeout is the guard. Just
// before it ends the run, waits give up with a message of their own.
// Without a -timeout it is far in the future.
func GiveUpAt(t deadliner) time.Time {
	end, ok := t.Deadline()
	if !ok {
		return time.Now().Add(100 * 365 * 24 * time.Hour)
	}
	if giveUp := end.Add(-giveUpMargin); giveUp.After(time.Now()) {
		return giveUp
	}
	return end
}

// Context is a context for the test t that ends at GiveUpAt(t).
func Context(t deadliner) (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.Background(), GiveUpAt(t))
}
