package queue

import (
	"fmt"
	"testing"
)

// TestDeadLetterCounts reads the letters kept for many subscriptions with
// one request, each count exact.
func TestDeadLetterCounts(t *testing.T) {
	const subs = 50
	q := openEmbedded(t, t.TempDir(), nil)
	// Subscription i keeps i%4 letters.
	for i := range subs {
		for j := range i % 4 {
			st := Stored{Seq: uint64(j + 1), Event: ev("team", fmt.Sprintf("evt-%d-%d", i, j), "order.failed")}
			if err := q.DeadLetter(ctxT(t), "team", fmt.Sprintf("sub.%d", i), fmt.Sprintf("uid-%d", i), false, st, Failure{Attempts: 1}); err != nil {
				t.Fatalf("DeadLetter: %v", err)
			}
		}
	}
	c, err := q.DeadLetterCounts(ctxT(t))
	if err != nil {
		t.Fatalf("DeadLetterCounts: %v", err)
	}
	for i := range subs {
		if got, want := c.Kept("team", fmt.Sprintf("sub.%d", i)), uint64(i%4); got != want {
			t.Errorf("letters kept for team/sub.%d = %d, want %d", i, got, want)
		}
	}
	for _, name := range []string{"sub", "sub.1.x", "unknown"} {
		if got := c.Kept("team", name); got != 0 {
			t.Errorf("letters kept for team/%s = %d, want 0", name, got)
		}
	}
	if got := c.Kept("other", "sub.1"); got != 0 {
		t.Errorf("letters kept for other/sub.1 = %d, want 0", got)
	}
	var none *DeadLetterCounts
	if got := none.Kept("team", "sub.1"); got != 0 {
		t.Errorf("Kept of nil counts = %d, want 0", got)
	}
}
