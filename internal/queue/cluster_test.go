package queue

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/queue/queuetest"
)

// publishUntilStored retries a publish across a leader change; ids make the
// retries idempotent.
func publishUntilStored(t *testing.T, q *Queue, events []Event) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := q.Publish(ctx, events)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("Publish did not succeed: %v", err)
		}
		t.Logf("Publish failed, retrying: %v", err)
		time.Sleep(200 * time.Millisecond)
	}
}

func TestClusterSurvivesNodeLoss(t *testing.T) {
	urls, stop := queuetest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	q, err := Open(ctx, Config{
		DispatcherNamespace: dispNs, DispatcherName: dispName,
		URL: strings.Join(urls, ","), Replicas: 3, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatalf("Open against the cluster: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	st, err := q.js.Stream(ctx, q.names.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("events stream has %d replicas, want 3", r)
	}
	ensure(t, q, ConsumerSpec{Name: "sub-all", Namespace: "shop", Patterns: []string{">"}})

	var want []string
	batch := func(from, to int) []Event {
		var out []Event
		for i := from; i < to; i++ {
			out = append(out, ev("shop", fmt.Sprint(i), "order.created"))
			want = append(want, fmt.Sprintf("shop/%d", i))
		}
		return out
	}
	publishUntilStored(t, q, batch(0, 20))
	for i := 20; i < 25; i++ {
		publishUntilStored(t, q, batch(i, i+1))
	}

	// Stop the events stream's leader, the node that matters most.
	leader := st.CachedInfo().Cluster.Leader
	stopped := 0
	for i := range urls {
		if fmt.Sprintf("hookline-test-%d", i) == leader {
			stopped = i
		}
	}
	stop(stopped)

	publishUntilStored(t, q, batch(25, 45))
	for i := 45; i < 50; i++ {
		publishUntilStored(t, q, batch(i, i+1))
	}
	slices.Sort(want)
	got := ids(collect(t, q, "sub-all", len(want)))
	if !slices.Equal(got, want) {
		t.Errorf("consumed %d events %q, want %d %q", len(got), got, len(want), want)
	}
}
