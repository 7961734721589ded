package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// watcher records what WatchProgress hands over.
type watcher struct {
	mu       sync.Mutex
	got      []Checkpoint
	loadedAt []int // len(got) at each call of loaded
	cancel   context.CancelFunc
	done     chan error
}

func startWatch(t *testing.T, q *Queue) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	w := &watcher{cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- q.WatchProgress(ctx, func(cp Checkpoint) {
			w.mu.Lock()
			w.got = append(w.got, cp)
			w.mu.Unlock()
		}, func() {
			w.mu.Lock()
			w.loadedAt = append(w.loadedAt, len(w.got))
			w.mu.Unlock()
		})
	}()
	t.Cleanup(cancel)
	return w
}

func (w *watcher) snapshot() ([]Checkpoint, []int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got), slices.Clone(w.loadedAt)
}

func (w *watcher) waitLoaded(t *testing.T) {
	t.Helper()
	waitFor(t, "checkpoints to be loaded", func() bool {
		_, l := w.snapshot()
		return len(l) > 0
	})
}

func (w *watcher) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	if err := <-w.done; err != nil {
		t.Errorf("WatchProgress: %v", err)
	}
}

// loadedCheckpoints is what a new watch hands over before it is loaded,
// by key.
func loadedCheckpoints(t *testing.T, q *Queue) map[string]Checkpoint {
	t.Helper()
	w := startWatch(t, q)
	w.waitLoaded(t)
	w.stop(t)
	got, loaded := w.snapshot()
	out := map[string]Checkpoint{}
	for _, cp := range got[:loaded[0]] {
		if _, ok := out[cp.Key]; ok {
			t.Errorf("checkpoint %s handed over twice while loading", cp.Key)
		}
		out[cp.Key] = cp
	}
	return out
}

func progressMessages(t *testing.T, q *Queue) uint64 {
	t.Helper()
	st, err := q.js.Stream(ctxT(t), q.names.ProgressStream)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}

func TestSaveAndWatchProgress(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), func(c *Config) { c.MaxBatch = 4 })

	// An empty store: loaded comes at once.
	w := startWatch(t, q)
	w.waitLoaded(t)
	if got, loaded := w.snapshot(); len(got) != 0 || !slices.Equal(loaded, []int{0}) {
		t.Errorf("watch of an empty store handed %+v, loaded after %v", got, loaded)
	}

	want := map[string]string{}
	var cps []Checkpoint
	for i := range 10 {
		key := fmt.Sprintf("sub-%d", i)
		cps = append(cps, Checkpoint{Key: key, Data: []byte(`{"v":1}`)})
		want[key] = `{"v":1}`
	}
	before := q.PublishRoundTrips()
	if err := q.SaveProgress(ctxT(t), cps); err != nil {
		t.Fatalf("SaveProgress of 10: %v", err)
	}
	if trips := q.PublishRoundTrips() - before; trips != 3 {
		t.Errorf("SaveProgress of 10 checkpoints with batches of 4 took %d store requests, want 3", trips)
	}
	// The first watch sees them as they come.
	waitFor(t, "the first watch to see 10 checkpoints", func() bool {
		got, _ := w.snapshot()
		return len(got) >= 10
	})
	w.stop(t)
	if got, loaded := w.snapshot(); len(got) != 10 || len(loaded) != 1 {
		t.Errorf("first watch: %d checkpoints, loaded %d times; want 10 and once", len(got), len(loaded))
	}

	if err := q.SaveProgress(ctxT(t), []Checkpoint{
		{Key: "sub-0", Data: []byte(`{"v":2}`)},
		{Key: "sub-1", Data: []byte(`{"v":2}`)},
		{Key: "reader-a", Data: []byte(`{"floor":7}`)},
	}); err != nil {
		t.Fatalf("SaveProgress: %v", err)
	}
	want["sub-0"], want["sub-1"], want["reader-a"] = `{"v":2}`, `{"v":2}`, `{"floor":7}`
	if n := progressMessages(t, q); n != 11 {
		t.Errorf("progress stream holds %d messages, want 11: one per key", n)
	}

	w = startWatch(t, q)
	w.waitLoaded(t)
	got, loaded := w.snapshot()
	if len(loaded) != 1 || loaded[0] != len(want) {
		t.Fatalf("loaded after %v checkpoints, want once after %d", loaded, len(want))
	}
	seen := map[uint64]bool{}
	for _, cp := range got {
		if want[cp.Key] != string(cp.Data) {
			t.Errorf("checkpoint %s = %s, want %s", cp.Key, cp.Data, want[cp.Key])
		}
		if cp.Seq == 0 || seen[cp.Seq] {
			t.Errorf("checkpoint %s has sequence %d, want a distinct one", cp.Key, cp.Seq)
		}
		seen[cp.Seq] = true
	}
	var maxSeq uint64
	for s := range seen {
		maxSeq = max(maxSeq, s)
	}

	// Later checkpoints follow, and loaded is not called again.
	if err := q.SaveProgress(ctxT(t), []Checkpoint{{Key: "sub-5", Data: []byte(`{"v":3}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := q.SaveProgress(ctxT(t), []Checkpoint{{Key: "sub-6", Data: []byte(`{"v":3}`)}, {Key: "sub-7", Data: []byte(`{"v":3}`)}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three later checkpoints", func() bool {
		got, _ := w.snapshot()
		return len(got) >= len(want)+3
	})
	w.stop(t)
	got, loaded = w.snapshot()
	later := got[len(want):]
	var keys []string
	for _, cp := range later {
		keys = append(keys, cp.Key+"="+string(cp.Data))
		if cp.Seq <= maxSeq {
			t.Errorf("later checkpoint %s has sequence %d, not after %d", cp.Key, cp.Seq, maxSeq)
		}
	}
	if !slices.Equal(keys, []string{`sub-5={"v":3}`, `sub-6={"v":3}`, `sub-7={"v":3}`}) {
		t.Errorf("later checkpoints = %q", keys)
	}
	if len(loaded) != 1 {
		t.Errorf("loaded called %d times, want once", len(loaded))
	}
}

func TestSaveProgressRefusesInvalidKeys(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	for _, key := range []string{"", "a.b", "a*", "a>", "a b"} {
		err := q.SaveProgress(ctxT(t), []Checkpoint{{Key: "sub-ok", Data: []byte(`1`)}, {Key: key, Data: []byte(`2`)}})
		if err == nil {
			t.Errorf("SaveProgress with key %q succeeded", key)
		}
		if _, err := q.ClaimProgress(ctxT(t), Checkpoint{Key: key, Data: []byte(`3`)}, 0); err == nil || errors.Is(err, ErrClaimed) {
			t.Errorf("ClaimProgress with key %q: err = %v, want a validation error", key, err)
		}
	}
	if n := progressMessages(t, q); n != 0 {
		t.Errorf("progress stream holds %d messages after refused calls, want 0", n)
	}
	if err := q.SaveProgress(ctxT(t), nil); err != nil {
		t.Errorf("SaveProgress of nothing: %v", err)
	}
}

func TestClaimProgress(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), func(c *Config) { c.EmbeddedListen = "127.0.0.1:0" })
	other := openPeer(t, q)
	const key = "sub-claimed"

	// Two instances claim a key nobody holds: one wins.
	type outcome struct {
		seq uint64
		err error
	}
	results := make([]outcome, 2)
	var wg sync.WaitGroup
	for i, inst := range []*Queue{q, other} {
		wg.Go(func() {
			seq, err := inst.ClaimProgress(ctxT(t), Checkpoint{Key: key, Data: []byte(fmt.Sprintf(`{"owner":%d}`, i))}, 0)
			results[i] = outcome{seq, err}
		})
	}
	wg.Wait()
	winner, loser := 0, 1
	if results[0].err != nil {
		winner, loser = 1, 0
	}
	if results[winner].err != nil || results[winner].seq == 0 {
		t.Fatalf("no claim succeeded: %+v", results)
	}
	if !errors.Is(results[loser].err, ErrClaimed) {
		t.Fatalf("the second claim: err = %v, want ErrClaimed", results[loser].err)
	}
	cps := loadedCheckpoints(t, q)
	if cp := cps[key]; string(cp.Data) != fmt.Sprintf(`{"owner":%d}`, winner) || cp.Seq != results[winner].seq {
		t.Errorf("stored checkpoint = %+v (data %s), want the winner's at %d", cp, cp.Data, results[winner].seq)
	}

	// With the right last sequence a claim succeeds; with another it fails.
	queues := []*Queue{q, other}
	seq2, err := queues[loser].ClaimProgress(ctxT(t), Checkpoint{Key: key, Data: []byte(`{"owner":"taken over"}`)}, results[winner].seq)
	if err != nil || seq2 <= results[winner].seq {
		t.Fatalf("claim with the last sequence = %d, %v; want a later sequence", seq2, err)
	}
	for _, last := range []uint64{0, results[winner].seq, seq2 + 1} {
		if _, err := queues[winner].ClaimProgress(ctxT(t), Checkpoint{Key: key, Data: []byte(`{}`)}, last); !errors.Is(err, ErrClaimed) {
			t.Errorf("claim expecting last sequence %d (actual %d): err = %v, want ErrClaimed", last, seq2, err)
		}
	}
	// A checkpoint saved since counts as well.
	if err := q.SaveProgress(ctxT(t), []Checkpoint{{Key: key, Data: []byte(`{"saved":true}`)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.ClaimProgress(ctxT(t), Checkpoint{Key: key, Data: []byte(`{}`)}, seq2); !errors.Is(err, ErrClaimed) {
		t.Errorf("claim after a save: err = %v, want ErrClaimed", err)
	}
	if cp := loadedCheckpoints(t, other)[key]; string(cp.Data) != `{"saved":true}` {
		t.Errorf("checkpoint after refused claims = %s, want the saved one", cp.Data)
	}
}

func TestDeleteProgress(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	if err := q.SaveProgress(ctxT(t), []Checkpoint{{Key: "sub-a", Data: []byte(`a`)}, {Key: "sub-b", Data: []byte(`b`)}, {Key: "sub-ab", Data: []byte(`ab`)}}); err != nil {
		t.Fatal(err)
	}
	if err := q.DeleteProgress(ctxT(t), "sub-a"); err != nil {
		t.Fatalf("DeleteProgress: %v", err)
	}
	cps := loadedCheckpoints(t, q)
	var keys []string
	for k := range cps {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"sub-ab", "sub-b"}) {
		t.Errorf("checkpoints after deleting sub-a = %q", keys)
	}
	st, err := q.js.Stream(ctxT(t), q.names.ProgressStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetLastMsgForSubject(ctxT(t), q.names.ProgressPrefix+".sub-a"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("reading the deleted checkpoint: err = %v, want ErrMsgNotFound", err)
	}
	// The key is free to claim again.
	if _, err := q.ClaimProgress(ctxT(t), Checkpoint{Key: "sub-a", Data: []byte(`new`)}, 0); err != nil {
		t.Errorf("claiming a deleted key: %v", err)
	}
	if err := q.DeleteProgress(ctxT(t), "sub-missing"); err != nil {
		t.Errorf("DeleteProgress of a missing key: %v", err)
	}
}

// TestDeleteProgressRefusesInvalidKeys: a key is one subject token, as
// SaveProgress and ClaimProgress check; a wildcard must not purge the
// checkpoints of other keys.
func TestDeleteProgressRefusesInvalidKeys(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	if err := q.SaveProgress(ctxT(t), []Checkpoint{{Key: "sub-a", Data: []byte(`a`)}, {Key: "sub-b", Data: []byte(`b`)}}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{">", "*", "sub-a.>"} {
		if err := q.DeleteProgress(ctxT(t), key); err == nil {
			t.Errorf("DeleteProgress(%q) succeeded", key)
		}
	}
	if n := progressMessages(t, q); n != 2 {
		t.Errorf("progress stream holds %d checkpoints after refused deletes, want 2", n)
	}
}
