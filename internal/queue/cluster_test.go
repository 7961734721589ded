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
	guard := ctxT(t)
	for {
		// A request lost to the old leader is retried rather than awaited.
		ctx, cancel := context.WithTimeout(guard, 10*time.Second)
		_, err := q.Publish(ctx, events)
		cancel()
		if err == nil {
			return
		}
		t.Logf("Publish failed, retrying: %v", err)
		if !sleepCtx(guard, 200*time.Millisecond) {
			t.Fatalf("Publish did not succeed: %v", err)
		}
	}
}

func TestClusterSurvivesNodeLoss(t *testing.T) {
	urls, stop := queuetest.StartCluster(t, 3)
	ctx := ctxT(t)
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
	for _, name := range []string{q.names.ProgressStream, q.names.BacklogStream, q.names.DeadLetterStream} {
		other, err := q.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := other.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}

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
	// Every event once, in the order stored.
	got := readN(t, q, 1, len(want))
	if ids := storedIDs(got); !slices.Equal(ids, want) || !slices.Equal(seqs(got), seqRange(1, uint64(len(want)))) {
		t.Errorf("read %q at %v, want %q at 1 to %d", ids, seqs(got), want, len(want))
	}
	// Progress survives too.
	if err := q.SaveProgress(ctx, []Checkpoint{{Key: "sub-a", Data: []byte(`{"floor":51}`)}}); err != nil {
		t.Fatalf("SaveProgress after the node loss: %v", err)
	}
	if cp := loadedCheckpoints(t, q)["sub-a"]; string(cp.Data) != `{"floor":51}` {
		t.Errorf("checkpoint after the node loss = %s", cp.Data)
	}
}
