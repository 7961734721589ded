package queue

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestCountsOfManyConsumers reads the backlog of 2,000 subscription
// consumers with one paged listing, each exact, and logs how long a
// listing takes: the status writer reads it once per tick.
func TestCountsOfManyConsumers(t *testing.T) {
	const consumers, kinds = 2000, 3
	q := openEmbedded(t, t.TempDir(), nil)
	start := time.Now()
	for i := range consumers {
		// Kept in memory, which spares the test a synced file per
		// consumer; listing them costs the same.
		_, err := q.js.CreateConsumer(ctxT(t), q.Names().EventsStream, jetstream.ConsumerConfig{
			Durable: fmt.Sprintf("sub-%04d", i), AckPolicy: jetstream.AckExplicitPolicy, MemoryStorage: true,
			FilterSubjects: FilterSubjects(q.Names().EventsPrefix+".team", []string{fmt.Sprintf("kind.%d", i%kinds)}),
		})
		if err != nil {
			t.Fatalf("creating consumer %d: %v", i, err)
		}
	}
	t.Logf("created %d consumers in %s", consumers, time.Since(start).Round(time.Millisecond))
	// kind.k gets k+1 events.
	var events []Event
	for k := range kinds {
		for j := range k + 1 {
			events = append(events, ev("team", fmt.Sprintf("evt-%d-%d", k, j), fmt.Sprintf("kind.%d", k)))
		}
	}
	mustPublish(t, q, events...)
	// Consumers count new messages as they learn of them, shortly after
	// the store.
	waitFor(t, "every consumer to count its events", func() bool {
		c, err := q.Counts(ctxT(t))
		return err == nil && c.Backlog(fmt.Sprintf("sub-%04d", consumers-1)) == int64((consumers-1)%kinds+1) &&
			c.Backlog("sub-0000") == 1 && c.Backlog("sub-0001") == 2 && c.Backlog("sub-0002") == 3
	})

	var took []time.Duration
	for range 3 {
		start := time.Now()
		c, err := q.Counts(ctxT(t))
		took = append(took, time.Since(start))
		if err != nil {
			t.Fatalf("Counts: %v", err)
		}
		if len(c.backlog) != consumers {
			t.Fatalf("Counts listed %d consumers, want %d", len(c.backlog), consumers)
		}
		for _, i := range []int{0, 1, 2, 1000, consumers - 1} {
			name := fmt.Sprintf("sub-%04d", i)
			if got, want := c.Backlog(name), int64(i%kinds+1); got != want {
				t.Errorf("backlog of %s = %d, want %d", name, got, want)
			}
		}
		if got := c.Backlog("sub-unknown"); got != 0 {
			t.Errorf("backlog of an unknown consumer = %d, want 0", got)
		}
	}
	slices.Sort(took)
	t.Logf("one listing of %d consumers: median %s (of %v)", consumers, took[1].Round(time.Millisecond), took)
}
