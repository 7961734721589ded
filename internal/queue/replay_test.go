package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// storedLetter is a dead letter as kept in the dead-letter stream.
type storedLetter struct {
	seq    uint64
	id     string
	uid    string
	stored time.Time
}

// deadLetters lists the dead-letter stream.
func deadLetters(t *testing.T, q *Queue) []storedLetter {
	t.Helper()
	st, err := q.js.Stream(ctxT(t), q.names.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	state := st.CachedInfo().State
	var out []storedLetter
	for seq := state.FirstSeq; seq <= state.LastSeq && state.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctxT(t), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("reading dead letter %d: %v", seq, err)
		}
		out = append(out, storedLetter{seq: seq, id: m.Header.Get(HeaderEventID), uid: m.Header.Get(HeaderSubscriptionUID), stored: m.Time})
	}
	return out
}

func letterIDs(letters []storedLetter) []string {
	var out []string
	for _, l := range letters {
		out = append(out, l.id+"@"+l.uid)
	}
	return out
}

func kept(t *testing.T, q *Queue, ns, name string) uint64 {
	t.Helper()
	c, err := q.DeadLetterCounts(ctxT(t))
	if err != nil {
		t.Fatalf("DeadLetterCounts: %v", err)
	}
	return c.Kept(ns, name)
}

// deadLetterEach dead-letters events under subscription shop/orders, in
// order, as read from the events stream at sequences 1, 2, ...
func deadLetterEach(t *testing.T, q *Queue, events []Event, uidOf func(Event) string) {
	t.Helper()
	for i, e := range events {
		err := q.DeadLetter(ctxT(t), "shop", "orders", uidOf(e), false, Stored{Seq: uint64(i + 1), Event: e},
			Failure{Class: "HTTPStatus", StatusCode: 500, Attempts: 3})
		if err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
	}
}

func TestPublishDirect(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	a := SubscriptionToken("uid-a")
	mustPublish(t, q, ev("shop", "1", "order.created"))

	// The same event id again, just published, without a message id: not
	// deduplicated against the original.
	res, err := q.PublishDirect(ctxT(t), a, ev("shop", "1", "order.created"), "")
	if err != nil || res.Duplicate {
		t.Fatalf("PublishDirect without message id = %+v, %v; want stored", res, err)
	}
	// A message id deduplicates.
	other := ev("shop", "2", "invoice.paid")
	other.Data = json.RawMessage(`{"amount":12.5}`)
	if res, err := q.PublishDirect(ctxT(t), a, other, "m-2"); err != nil || res.Duplicate {
		t.Fatalf("PublishDirect = %+v, %v; want stored", res, err)
	}
	if res, err := q.PublishDirect(ctxT(t), a, other, "m-2"); err != nil || !res.Duplicate {
		t.Fatalf("PublishDirect with a repeated message id = %+v, %v; want Duplicate", res, err)
	}
	if n := messages(t, q); n != 3 {
		t.Fatalf("stream holds %d messages, want the routed event and 2 direct events", n)
	}
	got := readN(t, q, 1, 3)
	want := []struct {
		ev     Event
		direct string
	}{{ev("shop", "1", "order.created"), ""}, {ev("shop", "1", "order.created"), a}, {other, a}}
	for i, w := range want {
		if !sameEvent(got[i].Event, w.ev) || got[i].Direct != w.direct {
			t.Errorf("event %d = %+v (data %s), want %+v (data %s) with Direct %q", i, got[i], got[i].Event.Data, w.ev, w.ev.Data, w.direct)
		}
	}

	for name, call := range map[string]func() error{
		"token with a dot": func() error {
			_, err := q.PublishDirect(ctxT(t), "sub-a.b", ev("shop", "5", "a"), "")
			return err
		},
		"token with a wildcard": func() error {
			_, err := q.PublishDirect(ctxT(t), "sub-*", ev("shop", "5", "a"), "")
			return err
		},
		"token without prefix": func() error {
			_, err := q.PublishDirect(ctxT(t), "a", ev("shop", "5", "a"), "")
			return err
		},
		"bare prefix": func() error {
			_, err := q.PublishDirect(ctxT(t), SubscriptionTokenPrefix, ev("shop", "5", "a"), "")
			return err
		},
		"message id with a newline": func() error {
			_, err := q.PublishDirect(ctxT(t), a, ev("shop", "5", "a"), "m\n5")
			return err
		},
		"invalid event": func() error {
			_, err := q.PublishDirect(ctxT(t), a, Event{ID: "5", Namespace: "shop", Type: "a.*", Time: t0, Data: json.RawMessage(`{}`)}, "")
			return err
		},
	} {
		if err := call(); err == nil {
			t.Errorf("%s: PublishDirect succeeded", name)
		}
	}
	if n := messages(t, q); n != 3 {
		t.Errorf("stream holds %d messages after refused direct events, want 3", n)
	}
}

func TestPublishDirectRefusesWhenFull(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), func(c *Config) { c.MaxBytes = 4096 })
	stored := 0
	var err error
	for range 20 {
		if _, err = q.PublishDirect(ctxT(t), "sub-a", bigEvent("x"), ""); err != nil {
			break
		}
		stored++
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("PublishDirect into a full stream: err = %v, want ErrFull", err)
	}
	if stored == 0 || messages(t, q) != uint64(stored) {
		t.Errorf("stream holds %d messages, want the %d that fitted (more than 0)", messages(t, q), stored)
	}
}

func TestReplay(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	tok := SubscriptionToken("uid-new")
	// Event 0 was dead-lettered by an earlier subscription of the same
	// name; events 1 to 5 by the current one.
	var events []Event
	for i := range 6 {
		e := ev("shop", fmt.Sprint(i), "order.failed")
		e.Time = t0.Add(time.Duration(i) * time.Minute)
		events = append(events, e)
	}
	deadLetterEach(t, q, events, func(e Event) string {
		if e.ID == "0" {
			return "uid-old"
		}
		return "uid-new"
	})
	// Another subscription's letter stays where it is.
	if err := q.DeadLetter(ctxT(t), "shop", "invoices", "uid-new", false, Stored{Seq: 9, Event: ev("shop", "9", "a")}, Failure{}); err != nil {
		t.Fatal(err)
	}
	letters := deadLetters(t, q)
	if got := letterIDs(letters); !slices.Equal(got, []string{"0@uid-old", "1@uid-new", "2@uid-new", "3@uid-new", "4@uid-new", "5@uid-new", "9@uid-new"}) {
		t.Fatalf("dead letters = %q", got)
	}
	for i := 1; i < len(letters); i++ {
		if !letters[i].stored.After(letters[i-1].stored) {
			t.Fatalf("dead letters %d and %d share a store time; the time bounds below need distinct ones", i-1, i)
		}
	}
	if n := kept(t, q, "shop", "orders"); n != 6 {
		t.Fatalf("dead letters kept = %d; want 6", n)
	}

	req := ReplayRequest{
		SubscriptionNamespace: "shop", SubscriptionName: "orders", SubscriptionUID: "uid-new", Token: tok,
		Since: letters[2].stored, Until: letters[4].stored, RequestID: "r1",
	}
	n, err := q.Replay(ctxT(t), req)
	if err != nil || n != 3 {
		t.Fatalf("Replay of [letter 2, letter 4] = %d, %v; want 3", n, err)
	}
	if got := letterIDs(deadLetters(t, q)); !slices.Equal(got, []string{"0@uid-old", "1@uid-new", "5@uid-new", "9@uid-new"}) {
		t.Errorf("dead letters after replaying 2 to 4 = %q", got)
	}
	if n := kept(t, q, "shop", "orders"); n != 3 {
		t.Errorf("dead letters kept after replaying 3 = %d, want 3", n)
	}
	got := readN(t, q, 1, 3)
	for i, g := range got {
		w := events[i+2]
		if g.Direct != tok || !sameEvent(g.Event, w) {
			t.Errorf("replayed event %d = %+v (data %s), want the original %+v (data %s) for %s alone", i, g, g.Event.Data, w, w.Data, tok)
		}
	}

	// Unbounded: the current subscription's remaining letters, not the
	// earlier one's.
	req.Since, req.Until, req.RequestID = time.Time{}, time.Time{}, "r2"
	if n, err := q.Replay(ctxT(t), req); err != nil || n != 2 {
		t.Fatalf("unbounded Replay = %d, %v; want 2", n, err)
	}
	if got := readN(t, q, 4, 2); !slices.Equal(storedIDs(got), []string{"shop/1", "shop/5"}) || got[0].Direct != tok || got[1].Direct != tok {
		t.Errorf("unbounded replay stored %q, Direct %q and %q", storedIDs(got), got[0].Direct, got[1].Direct)
	}
	if n, err := q.Replay(ctxT(t), req); err != nil || n != 0 {
		t.Errorf("repeated Replay = %d, %v; want 0", n, err)
	}
	if n := messages(t, q); n != 5 {
		t.Errorf("events stream holds %d messages after the repeated replay, want 5", n)
	}
	if got := letterIDs(deadLetters(t, q)); !slices.Equal(got, []string{"0@uid-old", "9@uid-new"}) {
		t.Errorf("dead letters = %q, want only the earlier subscription's and the other subscription's", got)
	}

	// The earlier subscription's letter, replayed under its UID.
	old := ReplayRequest{SubscriptionNamespace: "shop", SubscriptionName: "orders", SubscriptionUID: "uid-old", Token: tok, RequestID: "r3"}
	if n, err := q.Replay(ctxT(t), old); err != nil || n != 1 {
		t.Fatalf("Replay of uid-old = %d, %v; want 1", n, err)
	}
	if n := kept(t, q, "shop", "orders"); n != 0 {
		t.Errorf("dead letters kept after replaying everything = %d, want 0", n)
	}
	if got := readN(t, q, 6, 1); got[0].Event.ID != "0" || got[0].Direct != tok {
		t.Errorf("replay of uid-old stored %+v", got[0])
	}

	// A subscription without letters.
	none := ReplayRequest{SubscriptionNamespace: "shop", SubscriptionName: "quiet", SubscriptionUID: "uid-q", Token: SubscriptionToken("uid-q")}
	if n, err := q.Replay(ctxT(t), none); err != nil || n != 0 {
		t.Errorf("Replay without letters = %d, %v; want 0", n, err)
	}
	if n := kept(t, q, "shop", "invoices"); n != 1 {
		t.Errorf("the other subscription's letters = %d, want 1", n)
	}
	// The replay's readers are gone.
	dl, err := q.js.Stream(ctxT(t), q.names.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	if c := dl.CachedInfo().State.Consumers; c != 0 {
		t.Errorf("dead-letter stream has %d consumers after the replays, want 0", c)
	}
}

// TestReplayManyLetters replays more letters than one round reads, with
// batches smaller than a round.
func TestReplayManyLetters(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), func(c *Config) { c.MaxBatch = 30 })
	const n = replayChunk + 37
	var events []Event
	for i := range n {
		events = append(events, ev("shop", fmt.Sprint(i), "order.failed"))
	}
	deadLetterEach(t, q, events, func(Event) string { return "uid-a" })
	tok := SubscriptionToken("uid-a")
	req := ReplayRequest{SubscriptionNamespace: "shop", SubscriptionName: "orders", SubscriptionUID: "uid-a", Token: tok}
	if got, err := q.Replay(ctxT(t), req); err != nil || got != n {
		t.Fatalf("Replay = %d, %v; want %d", got, err, n)
	}
	got := readN(t, q, 1, n)
	for i, g := range got {
		if g.Event.ID != fmt.Sprint(i) || g.Direct != tok {
			t.Fatalf("replayed event %d = %+v, want event %d in order for %s", i, g, i, tok)
		}
	}
	if k := kept(t, q, "shop", "orders"); k != 0 {
		t.Errorf("dead letters kept = %d, want 0", k)
	}
}

// TestReplayAfterCrash: a replay that stored the republished events but
// did not get to delete the letters is repeated with the same request id;
// the subscription receives each event once.
func TestReplayAfterCrash(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	tok := SubscriptionToken("uid-a")
	deadLetterEach(t, q, []Event{ev("shop", "1", "a"), ev("shop", "2", "a"), ev("shop", "3", "a")}, func(Event) string { return "uid-a" })
	letters := deadLetters(t, q)
	if len(letters) != 3 {
		t.Fatalf("%d dead letters, want 3", len(letters))
	}
	// The first attempt, up to the crash: letters 1 and 2 republished.
	st, err := q.js.Stream(ctxT(t), q.names.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range letters[:2] {
		raw, err := st.GetMsg(ctxT(t), l.seq)
		if err != nil {
			t.Fatal(err)
		}
		e, err := storedEvent(raw.Header, raw.Data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.PublishDirect(ctxT(t), tok, e, replayMsgID("req-1", l.seq)); err != nil {
			t.Fatal(err)
		}
	}
	req := ReplayRequest{SubscriptionNamespace: "shop", SubscriptionName: "orders", SubscriptionUID: "uid-a", Token: tok, RequestID: "req-1"}
	if n, err := q.Replay(ctxT(t), req); err != nil || n != 3 {
		t.Fatalf("Replay = %d, %v; want 3", n, err)
	}
	if n := messages(t, q); n != 3 {
		t.Errorf("events stream holds %d messages, want 3: each event once", n)
	}
	if got := storedIDs(readN(t, q, 1, 3)); !slices.Equal(got, []string{"shop/1", "shop/2", "shop/3"}) {
		t.Errorf("stored %q, want each event once", got)
	}
	if n := kept(t, q, "shop", "orders"); n != 0 {
		t.Errorf("dead letters kept = %d, want 0", n)
	}
}

func TestReplayValidates(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	deadLetterEach(t, q, []Event{ev("shop", "1", "a")}, func(Event) string { return "u" })
	good := ReplayRequest{SubscriptionNamespace: "shop", SubscriptionName: "orders", SubscriptionUID: "u", Token: SubscriptionToken("u")}
	for name, mutate := range map[string]func(*ReplayRequest){
		"no namespace":         func(r *ReplayRequest) { r.SubscriptionNamespace = "" },
		"namespace with a dot": func(r *ReplayRequest) { r.SubscriptionNamespace = "sh.op" },
		"no name":              func(r *ReplayRequest) { r.SubscriptionName = "" },
		"no UID":               func(r *ReplayRequest) { r.SubscriptionUID = "" },
		"no token":             func(r *ReplayRequest) { r.Token = "" },
		"token without prefix": func(r *ReplayRequest) { r.Token = "orders" },
		"token with a dot":     func(r *ReplayRequest) { r.Token = "sub-u.v" },
		"until before since":   func(r *ReplayRequest) { r.Since, r.Until = t0, t0.Add(-time.Second) },
		"request id with a CR": func(r *ReplayRequest) { r.RequestID = "a\rb" },
	} {
		r := good
		mutate(&r)
		if n, err := q.Replay(ctxT(t), r); err == nil || n != 0 {
			t.Errorf("%s: Replay = %d, %v; want an error", name, n, err)
		}
	}
	if n := kept(t, q, "shop", "orders"); n != 1 {
		t.Errorf("dead letters kept after refused replays = %d, want 1", n)
	}
	if n := messages(t, q); n != 0 {
		t.Errorf("events stream holds %d messages after refused replays, want 0", n)
	}
}
