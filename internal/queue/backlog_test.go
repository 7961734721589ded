package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// readBacklogN reads a subscription's moved events from sequence from
// until n arrived.
func readBacklogN(t *testing.T, q *Queue, token string, from uint64, n int) []Stored {
	t.Helper()
	st, err := q.js.Stream(ctxT(t), q.names.BacklogStream)
	if err != nil {
		t.Fatal(err)
	}
	lastMsg, err := st.GetLastMsgForSubject(ctxT(t), q.backlogSubject(token))
	if err != nil {
		t.Fatalf("reading %d moved events of %s: the last one: %v", n, token, err)
	}
	read := func(ctx context.Context, from uint64, handle func(Stored) error) error {
		return q.ReadBacklog(ctx, token, from, handle)
	}
	return readUpTo(t, "backlog of "+token, lastMsg.Sequence, from, n, read)
}

func backlogMessages(t *testing.T, q *Queue) uint64 {
	t.Helper()
	u, err := q.BacklogUsage(ctxT(t))
	if err != nil {
		t.Fatalf("BacklogUsage: %v", err)
	}
	return u.Messages
}

// move is event id moved for token after attempts attempts, due at
// notBefore.
func move(token, id string, attempts int, notBefore time.Time) Move {
	return Move{
		Token: token,
		ID:    token + "/e" + id + "/" + fmt.Sprint(attempts),
		Event: Stored{
			Event:     ev("shop", id, "order.created"),
			Stored:    t0.Add(-time.Duration(attempts) * time.Minute),
			Attempts:  attempts,
			NotBefore: notBefore,
		},
	}
}

func TestParkAndReadBacklog(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), func(c *Config) { c.MaxBatch = 2 })
	a, b := SubscriptionToken("uid-a"), SubscriptionToken("uid-b")
	in := []Move{
		move(a, "1", 3, t0.Add(time.Hour)),
		move(b, "1", 1, time.Time{}),
		move(a, "2", 0, time.Time{}),
		move(a, "3", 7, t0.Add(90*time.Minute+123*time.Nanosecond)),
		move(b, "2", 2, t0.Add(time.Second)),
	}
	before := q.PublishRoundTrips()
	parked, err := q.Park(ctxT(t), in)
	if err != nil {
		t.Fatalf("Park: %v", err)
	}
	if dups := duplicates(parked); !slices.Equal(dups, make([]bool, len(in))) {
		t.Errorf("Park duplicates = %v, want none", dups)
	}
	if trips := q.PublishRoundTrips() - before; trips != 3 {
		t.Errorf("Park of 5 moves with batches of 2 took %d store requests, want 3", trips)
	}
	if n := backlogMessages(t, q); n != 5 {
		t.Fatalf("backlog stream holds %d messages, want 5", n)
	}

	check := func(token string, got []Stored, want []Move) {
		t.Helper()
		for i, s := range got {
			w := want[i].Event
			if !sameEvent(s.Event, w.Event) || s.Attempts != w.Attempts || !s.NotBefore.Equal(w.NotBefore) ||
				!s.Stored.Equal(w.Stored) || s.Direct != "" {
				t.Errorf("%s: moved event %d = %+v, want %+v", token, i, s, w)
			}
			if i > 0 && s.Seq <= got[i-1].Seq {
				t.Errorf("%s: moved event %d at sequence %d, not after %d", token, i, s.Seq, got[i-1].Seq)
			}
		}
	}
	gotA := readBacklogN(t, q, a, 0, 3)
	check(a, gotA, []Move{in[0], in[2], in[3]})
	gotB := readBacklogN(t, q, b, 1, 2)
	check(b, gotB, []Move{in[1], in[4]})
	// Park says where each move is stored, and a reader how many of its
	// part are left after each.
	if want := []uint64{parked[0].Seq, parked[2].Seq, parked[3].Seq, parked[1].Seq, parked[4].Seq}; !slices.Equal(append(seqs(gotA), seqs(gotB)...), want) {
		t.Errorf("read at sequences %v and %v, Park said %v", seqs(gotA), seqs(gotB), want)
	}
	for i, s := range gotA {
		if want := uint64(len(gotA) - 1 - i); s.Pending != want {
			t.Errorf("%s: moved event %d read with %d pending, want %d", a, i, s.Pending, want)
		}
	}
	// From the middle of a's part.
	if got := readBacklogN(t, q, a, gotA[1].Seq, 2); !slices.Equal(seqs(got), seqs(gotA[1:])) {
		t.Errorf("ReadBacklog of %s from %d = sequences %v, want %v", a, gotA[1].Seq, seqs(got), seqs(gotA[1:]))
	}

	// A move repeated after a crash is stored once, whether alone in its
	// batch, beside a new one, or twice in one call.
	again := move(a, "4", 1, time.Time{})
	parked, err = q.Park(ctxT(t), []Move{in[2], again, in[3], again})
	if err != nil {
		t.Fatalf("Park with repeated moves: %v", err)
	}
	if dups, want := duplicates(parked), []bool{true, false, true, true}; !slices.Equal(dups, want) {
		t.Errorf("Park duplicates = %v, want %v", dups, want)
	}
	if got, want := []uint64{parked[0].Seq, parked[2].Seq, parked[3].Seq}, []uint64{gotA[1].Seq, gotA[2].Seq, parked[1].Seq}; !slices.Equal(got, want) {
		t.Errorf("repeated moves said to be at %v, want where the first copies are, %v", got, want)
	}
	if n := backlogMessages(t, q); n != 6 {
		t.Errorf("backlog stream holds %d messages, want 6: each repeated move once", n)
	}
	if got := readBacklogN(t, q, a, 0, 4); got[3].Event.ID != "4" || !slices.Equal(seqs(got[:3]), seqs(gotA)) {
		t.Errorf("%s's moves after repeats = %q at %v", a, storedIDs(got), seqs(got))
	}
	// A move without an id is not deduplicated.
	noID := move(b, "3", 1, time.Time{})
	noID.ID = ""
	for range 2 {
		if parked, err := q.Park(ctxT(t), []Move{noID}); err != nil || parked[0].Duplicate {
			t.Errorf("Park without an id = %+v, %v; want stored", parked, err)
		}
	}
	if got := readBacklogN(t, q, b, 0, 4); !slices.Equal(storedIDs(got), []string{"shop/1", "shop/2", "shop/3", "shop/3"}) {
		t.Errorf("%s's moves = %q", b, storedIDs(got))
	}
	// Invalid events are refused before anything is stored.
	bad := move(a, "5", 1, time.Time{})
	bad.Event.Event.Type = "a.*"
	if _, err := q.Park(ctxT(t), []Move{move(a, "6", 1, time.Time{}), bad}); err == nil {
		t.Errorf("Park of an invalid event succeeded")
	}
	if n := backlogMessages(t, q); n != 8 {
		t.Errorf("backlog stream holds %d messages after a refused Park, want 8", n)
	}
}

func TestPurgeBacklog(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	a, b := SubscriptionToken("uid-a"), SubscriptionToken("uid-b")
	var moves []Move
	for i := range 4 {
		moves = append(moves, move(a, fmt.Sprint(i), 1, time.Time{}), move(b, fmt.Sprint(i), 1, time.Time{}))
	}
	if _, err := q.Park(ctxT(t), moves); err != nil {
		t.Fatal(err)
	}
	gotA := readBacklogN(t, q, a, 0, 4)
	gotB := readBacklogN(t, q, b, 0, 4)

	// Below a's third move: a keeps its last two, b keeps everything,
	// even its moves stored below that sequence.
	if err := q.PurgeBacklog(ctxT(t), a, gotA[2].Seq); err != nil {
		t.Fatalf("PurgeBacklog: %v", err)
	}
	if n := backlogMessages(t, q); n != 6 {
		t.Errorf("backlog stream holds %d messages, want 6", n)
	}
	if got := readBacklogN(t, q, a, 0, 2); !slices.Equal(seqs(got), seqs(gotA[2:])) {
		t.Errorf("%s after the purge: sequences %v, want %v", a, seqs(got), seqs(gotA[2:]))
	}
	if got := readBacklogN(t, q, b, 0, 4); !slices.Equal(seqs(got), seqs(gotB)) {
		t.Errorf("%s after purging %s: sequences %v, want %v", b, a, seqs(got), seqs(gotB))
	}
	// Below 1 nothing goes; 0 takes all of a's part.
	if err := q.PurgeBacklog(ctxT(t), a, 1); err != nil {
		t.Fatalf("PurgeBacklog below 1: %v", err)
	}
	if n := backlogMessages(t, q); n != 6 {
		t.Errorf("backlog stream holds %d messages after purging below 1, want 6", n)
	}
	if err := q.PurgeBacklog(ctxT(t), a, 0); err != nil {
		t.Fatalf("PurgeBacklog of everything: %v", err)
	}
	if n := backlogMessages(t, q); n != 4 {
		t.Errorf("backlog stream holds %d messages after purging all of %s, want b's 4", n, a)
	}
	if got := readBacklogN(t, q, b, 0, 4); !slices.Equal(seqs(got), seqs(gotB)) {
		t.Errorf("%s after purging all of %s: sequences %v, want %v", b, a, seqs(got), seqs(gotB))
	}
	// A new move of a is read from where the purge left it.
	if _, err := q.Park(ctxT(t), []Move{move(a, "9", 2, time.Time{})}); err != nil {
		t.Fatal(err)
	}
	if got := readBacklogN(t, q, a, 0, 1); got[0].Event.ID != "9" {
		t.Errorf("first move of %s after the purge = %+v, want event 9", a, got[0])
	}
}

func TestParkRefusesWhenFull(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), func(c *Config) { c.BacklogMaxBytes = 4096 })
	a := SubscriptionToken("uid-a")
	u, err := q.BacklogUsage(ctxT(t))
	if err != nil || u.MaxBytes != 4096 {
		t.Fatalf("BacklogUsage = %+v, %v; want max 4096", u, err)
	}
	big := func(id string) Move {
		return Move{Token: a, ID: "m-" + id, Event: Stored{Event: bigEvent(id), Stored: t0, Attempts: 1}}
	}
	stored := 0
	for i := range 20 {
		_, err = q.Park(ctxT(t), []Move{big(fmt.Sprint(i))})
		if err != nil {
			break
		}
		stored++
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Park into a full backlog stream: err = %v, want ErrFull", err)
	}
	if stored == 0 {
		t.Fatalf("nothing fitted into 4 KiB")
	}
	// A batch is refused whole.
	if _, err := q.Park(ctxT(t), []Move{big("b1"), big("b2")}); !errors.Is(err, ErrFull) {
		t.Errorf("Park of a batch into a full backlog stream: err = %v, want ErrFull", err)
	}
	if n := backlogMessages(t, q); n != uint64(stored) {
		t.Errorf("backlog stream holds %d messages, want the %d that fitted", n, stored)
	}
	// The events stream has room of its own.
	mustPublish(t, q, bigEvent("e1"))
	// Purging makes room again.
	if err := q.PurgeBacklog(ctxT(t), a, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Park(ctxT(t), []Move{big("after")}); err != nil {
		t.Errorf("Park after purging: %v", err)
	}
}

func TestDeadLetter(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	e := ev("shop", "4", "order.failed")
	f := Failure{Class: "HTTPStatus", StatusCode: 500, Message: "server said:\nboom", Attempts: 8}
	for range 2 {
		if err := q.DeadLetter(ctxT(t), "shop", "orders.eu", "uid-1", false, Stored{Seq: 7, Event: e}, f); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
	}
	kept := func(ns, name string) uint64 {
		t.Helper()
		c, err := q.DeadLetterCounts(ctxT(t))
		if err != nil {
			t.Fatalf("DeadLetterCounts: %v", err)
		}
		return c.Kept(ns, name)
	}
	if n := kept("shop", "orders.eu"); n != 1 {
		t.Fatalf("dead letters kept after dead-lettering the same event twice = %d, want 1", n)
	}
	st, err := q.js.Stream(ctxT(t), q.names.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.GetLastMsgForSubject(ctxT(t), q.names.DeadLetterPrefix+".shop.orders_eu")
	if err != nil {
		t.Fatalf("reading dead letter: %v", err)
	}
	wantHdr := map[string]string{
		HeaderEventID: "4", HeaderEventType: "order.failed", HeaderEventNamespace: "shop",
		HeaderEventTime: "2026-03-01T12:00:00.123456789Z", HeaderAttempts: "8",
		HeaderFailureClass: "HTTPStatus", HeaderFailureStatus: "500",
		HeaderFailureMessage: "server said: boom", HeaderSubscriptionUID: "uid-1",
	}
	for k, v := range wantHdr {
		if got := raw.Header.Get(k); got != v {
			t.Errorf("dead letter header %s = %q, want %q", k, got, v)
		}
	}
	if string(raw.Data) != `{"id":"4"}` {
		t.Errorf("dead letter body = %s", raw.Data)
	}

	// The same sequence from the backlog stream, another sequence, and
	// the same sequence for another incarnation are other letters.
	for _, c := range []struct {
		uid     string
		backlog bool
		seq     uint64
	}{{"uid-1", true, 7}, {"uid-1", false, 8}, {"uid-2", false, 7}} {
		if err := q.DeadLetter(ctxT(t), "shop", "orders.eu", c.uid, c.backlog, Stored{Seq: c.seq, Event: e}, f); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
	}
	if n := kept("shop", "orders.eu"); n != 4 {
		t.Errorf("dead letters kept = %d, want 4", n)
	}
	if n := kept("shop", "other"); n != 0 {
		t.Errorf("dead letters of another subscription = %d, want 0", n)
	}
	if err := q.DeadLetter(ctxT(t), "shop", "orders.eu", "uid-1", false, Stored{Seq: 9, Event: Event{ID: "x", Namespace: "shop"}}, f); err == nil {
		t.Errorf("DeadLetter of an invalid event succeeded")
	}
	if _, err := st.GetMsg(ctxT(t), 5); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("a fifth dead letter exists: err = %v", err)
	}
}

// TestPurgeBacklogRefusesInvalidTokens: a token is one subject token; a
// wildcard must not purge the moves of every subscription.
func TestPurgeBacklogRefusesInvalidTokens(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	a, b := SubscriptionToken("uid-a"), SubscriptionToken("uid-b")
	if _, err := q.Park(ctxT(t), []Move{move(a, "1", 1, time.Time{}), move(b, "1", 1, time.Time{})}); err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{">", "*", a + ".>"} {
		if err := q.PurgeBacklog(ctxT(t), token, 0); err == nil {
			t.Errorf("PurgeBacklog(%q) succeeded", token)
		}
	}
	if n := backlogMessages(t, q); n != 2 {
		t.Errorf("backlog stream holds %d moves after refused purges, want 2", n)
	}
}

func duplicates(parked []PublishResult) []bool {
	out := make([]bool, len(parked))
	for i, p := range parked {
		out[i] = p.Duplicate
	}
	return out
}
