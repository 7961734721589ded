package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// received is one delivery as a handler saw it.
type received struct {
	Event  Event
	Direct bool
}

// collectReceived consumes name, acking everything, until want messages
// arrived, then checks that the consumer's backlog is empty.
func collectReceived(t *testing.T, q *Queue, name string, want int) []received {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []received
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, name, 4, func(ctx context.Context, m *Message) {
			if err := m.Ack(ctx); err != nil {
				t.Errorf("Ack: %v", err)
			}
			mu.Lock()
			got = append(got, received{Event: m.Event, Direct: m.Direct})
			mu.Unlock()
		})
	}()
	waitFor(t, fmt.Sprintf("%d messages on %s", want, name), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= want
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if b, err := backlog(t, q, name); err != nil || b != 0 {
		t.Fatalf("backlog of %s after consuming %d = %d, %v; want 0", name, want, b, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != want {
		t.Fatalf("%s received %d messages, want %d", name, len(got), want)
	}
	slices.SortFunc(got, func(a, b received) int { return strings.Compare(a.Event.ID, b.Event.ID) })
	return got
}

// deadLetterAll consumes n events from consumer one at a time, in stream
// order, and dead-letters each under subscription shop/orders with the UID
// uidOf gives.
func deadLetterAll(t *testing.T, q *Queue, consumer string, n int, uidOf func(Event) string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	count := 0
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, consumer, 1, func(ctx context.Context, m *Message) {
			err := m.DeadLetter(ctx, "shop", "orders", uidOf(m.Event), Failure{Class: "HTTPStatus", StatusCode: 500, Attempts: 3})
			if err != nil {
				t.Errorf("DeadLetter: %v", err)
			}
			mu.Lock()
			count++
			mu.Unlock()
		})
	}()
	waitFor(t, fmt.Sprintf("%d dead letters", n), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return count >= n
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
}

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

func TestPublishDirect(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	ensure(t, q, ConsumerSpec{Name: "sub-a", Namespace: "shop", Patterns: []string{"order.created"}})
	ensure(t, q, ConsumerSpec{Name: "sub-b", Namespace: "shop", Patterns: []string{">"}})
	ensure(t, q, ConsumerSpec{Name: "sub-c", Namespace: "other", Patterns: []string{">"}})
	mustPublish(t, q, ev("shop", "1", "order.created"))
	collectReceived(t, q, "sub-a", 1)
	collectReceived(t, q, "sub-b", 1)

	// The same event id again, just published, without a message id: not
	// deduplicated against the original.
	res, err := q.PublishDirect(ctxT(t), "sub-a", ev("shop", "1", "order.created"), "")
	if err != nil || res.Duplicate {
		t.Fatalf("PublishDirect without message id = %+v, %v; want stored", res, err)
	}
	// A type sub-a's patterns do not select still reaches it; a message id
	// deduplicates.
	other := ev("shop", "2", "invoice.paid")
	other.Data = json.RawMessage(`{"amount":12.5}`)
	if res, err := q.PublishDirect(ctxT(t), "sub-a", other, "m-2"); err != nil || res.Duplicate {
		t.Fatalf("PublishDirect = %+v, %v; want stored", res, err)
	}
	if res, err := q.PublishDirect(ctxT(t), "sub-a", other, "m-2"); err != nil || !res.Duplicate {
		t.Fatalf("PublishDirect with a repeated message id = %+v, %v; want Duplicate", res, err)
	}
	if n := messages(t, q); n != 2 {
		t.Fatalf("stream holds %d messages, want the 2 direct events", n)
	}
	for _, c := range []string{"sub-b", "sub-c"} {
		if b, err := backlog(t, q, c); err != nil || b != 0 {
			t.Errorf("backlog of %s = %d, %v; want 0: direct events are for sub-a alone", c, b, err)
		}
	}
	got := collectReceived(t, q, "sub-a", 2)
	want := []received{{Event: ev("shop", "1", "order.created"), Direct: true}, {Event: other, Direct: true}}
	for i := range want {
		g, w := got[i], want[i]
		if g.Event.ID != w.Event.ID || g.Event.Type != w.Event.Type || g.Event.Namespace != w.Event.Namespace ||
			!g.Event.Time.Equal(w.Event.Time) || string(g.Event.Data) != string(w.Event.Data) || g.Direct != w.Direct {
			t.Errorf("delivery %d = %+v (data %s), want %+v (data %s)", i, g, g.Event.Data, w, w.Event.Data)
		}
	}
	// Interest retention: once sub-a acked them, nothing keeps them.
	waitFor(t, "acked direct events to leave the stream", func() bool { return messages(t, q) == 0 })

	// Routed events are not marked direct.
	mustPublish(t, q, ev("shop", "3", "order.created"))
	if got := collectReceived(t, q, "sub-a", 1); got[0].Direct || got[0].Event.ID != "3" {
		t.Errorf("routed delivery = %+v, want event 3 not direct", got[0])
	}
	collectReceived(t, q, "sub-b", 1)

	if _, err := q.PublishDirect(ctxT(t), "sub-missing", ev("shop", "4", "a"), "m-4"); !errors.Is(err, ErrConsumerNotFound) {
		t.Errorf("PublishDirect to a missing consumer: err = %v, want ErrConsumerNotFound", err)
	}
	for name, call := range map[string]func() error{
		"consumer name with a dot": func() error {
			_, err := q.PublishDirect(ctxT(t), "sub-a.b", ev("shop", "5", "a"), "")
			return err
		},
		"consumer name without prefix": func() error {
			_, err := q.PublishDirect(ctxT(t), "a", ev("shop", "5", "a"), "")
			return err
		},
		"message id with a newline": func() error {
			_, err := q.PublishDirect(ctxT(t), "sub-a", ev("shop", "5", "a"), "m\n5")
			return err
		},
		"invalid event": func() error {
			_, err := q.PublishDirect(ctxT(t), "sub-a", Event{ID: "5", Namespace: "shop", Type: "a.*", Time: t0, Data: json.RawMessage(`{}`)}, "")
			return err
		},
	} {
		if err := call(); err == nil || errors.Is(err, ErrConsumerNotFound) {
			t.Errorf("%s: err = %v, want a validation error", name, err)
		}
	}
	if n := messages(t, q); n != 0 {
		t.Errorf("stream holds %d messages after refused direct events, want 0", n)
	}
}

func TestPublishDirectRefusesWhenFull(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), func(c *Config) { c.MaxBytes = 4096 })
	ensure(t, q, ConsumerSpec{Name: "sub-a", Namespace: "shop", Patterns: []string{">"}})
	big := ev("shop", "x", "blob")
	big.Data = json.RawMessage(`{"pad":"` + strings.Repeat("x", 900) + `"}`)
	stored := 0
	var err error
	for range 20 {
		if _, err = q.PublishDirect(ctxT(t), "sub-a", big, ""); err != nil {
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
	ensure(t, q, ConsumerSpec{Name: "sub-new", Namespace: "shop", Patterns: []string{"order.*"}})
	ensure(t, q, ConsumerSpec{Name: "sub-wide", Namespace: "shop", Patterns: []string{">"}})
	// Event 0 was dead-lettered by an earlier subscription of the same
	// name; events 1 to 5 by the current one.
	var events []Event
	for i := range 6 {
		e := ev("shop", fmt.Sprint(i), "order.failed")
		e.Time = t0.Add(time.Duration(i) * time.Minute)
		events = append(events, e)
	}
	mustPublish(t, q, events...)
	collectReceived(t, q, "sub-wide", 6)
	deadLetterAll(t, q, "sub-new", 6, func(e Event) string {
		if e.ID == "0" {
			return "uid-old"
		}
		return "uid-new"
	})
	letters := deadLetters(t, q)
	if got := letterIDs(letters); !slices.Equal(got, []string{"0@uid-old", "1@uid-new", "2@uid-new", "3@uid-new", "4@uid-new", "5@uid-new"}) {
		t.Fatalf("dead letters = %q", got)
	}
	for i := 1; i < len(letters); i++ {
		if !letters[i].stored.After(letters[i-1].stored) {
			t.Fatalf("dead letters %d and %d share a store time; the time bounds below need distinct ones", i-1, i)
		}
	}
	if n, err := deadLettered(t, q, "shop", "orders"); err != nil || n != 6 {
		t.Fatalf("DeadLettered = %d, %v; want 6", n, err)
	}

	req := ReplayRequest{
		SubscriptionNamespace: "shop", SubscriptionName: "orders", SubscriptionUID: "uid-new", Consumer: "sub-new",
		Since: letters[2].stored, Until: letters[4].stored, RequestID: "r1",
	}
	n, err := q.Replay(ctxT(t), req)
	if err != nil || n != 3 {
		t.Fatalf("Replay of [letter 2, letter 4] = %d, %v; want 3", n, err)
	}
	if got := letterIDs(deadLetters(t, q)); !slices.Equal(got, []string{"0@uid-old", "1@uid-new", "5@uid-new"}) {
		t.Errorf("dead letters after replaying 2 to 4 = %q", got)
	}
	if n, err := deadLettered(t, q, "shop", "orders"); err != nil || n != 3 {
		t.Errorf("DeadLettered after replaying 3 = %d, %v; want 3", n, err)
	}
	if b, err := backlog(t, q, "sub-wide"); err != nil || b != 0 {
		t.Errorf("backlog of another subscription of the namespace = %d, %v; want 0", b, err)
	}
	got := collectReceived(t, q, "sub-new", 3)
	for i, g := range got {
		w := events[i+2]
		if !g.Direct || g.Event.ID != w.ID || g.Event.Type != w.Type || g.Event.Namespace != w.Namespace ||
			!g.Event.Time.Equal(w.Time) || string(g.Event.Data) != string(w.Data) {
			t.Errorf("replayed delivery %d = %+v (data %s), want the original %+v (data %s), direct", i, g, g.Event.Data, w, w.Data)
		}
	}

	// Unbounded: the current subscription's remaining letters, not the
	// earlier one's.
	req.Since, req.Until, req.RequestID = time.Time{}, time.Time{}, "r2"
	if n, err := q.Replay(ctxT(t), req); err != nil || n != 2 {
		t.Fatalf("unbounded Replay = %d, %v; want 2", n, err)
	}
	if got := ids(eventsOf(collectReceived(t, q, "sub-new", 2))); !slices.Equal(got, []string{"shop/1", "shop/5"}) {
		t.Errorf("unbounded replay delivered %q", got)
	}
	if n, err := q.Replay(ctxT(t), req); err != nil || n != 0 {
		t.Errorf("repeated Replay = %d, %v; want 0", n, err)
	}
	if got := letterIDs(deadLetters(t, q)); !slices.Equal(got, []string{"0@uid-old"}) {
		t.Errorf("dead letters = %q, want only the earlier subscription's", got)
	}

	// The earlier subscription's letter, replayed under its UID.
	old := ReplayRequest{SubscriptionNamespace: "shop", SubscriptionName: "orders", SubscriptionUID: "uid-old", Consumer: "sub-new", RequestID: "r3"}
	if n, err := q.Replay(ctxT(t), old); err != nil || n != 1 {
		t.Fatalf("Replay of uid-old = %d, %v; want 1", n, err)
	}
	if n, err := deadLettered(t, q, "shop", "orders"); err != nil || n != 0 {
		t.Errorf("DeadLettered after replaying everything = %d, %v; want 0", n, err)
	}
	if got := collectReceived(t, q, "sub-new", 1); got[0].Event.ID != "0" {
		t.Errorf("replay of uid-old delivered %+v", got[0])
	}

	// A subscription without letters.
	none := ReplayRequest{SubscriptionNamespace: "shop", SubscriptionName: "quiet", SubscriptionUID: "uid-q", Consumer: "sub-wide"}
	if n, err := q.Replay(ctxT(t), none); err != nil || n != 0 {
		t.Errorf("Replay without letters = %d, %v; want 0", n, err)
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

func eventsOf(rs []received) []Event {
	out := make([]Event, len(rs))
	for i, r := range rs {
		out[i] = r.Event
	}
	return out
}

// TestReplayAfterCrash: a replay that stored the republished events but
// did not get to delete the letters is repeated with the same request id;
// the subscription receives each event once.
func TestReplayAfterCrash(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	ensure(t, q, ConsumerSpec{Name: "sub-a", Namespace: "shop", Patterns: []string{">"}})
	mustPublish(t, q, ev("shop", "1", "a"), ev("shop", "2", "a"), ev("shop", "3", "a"))
	deadLetterAll(t, q, "sub-a", 3, func(Event) string { return "uid-a" })
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
		if _, err := q.PublishDirect(ctxT(t), "sub-a", e, replayMsgID("req-1", l.seq)); err != nil {
			t.Fatal(err)
		}
	}
	req := ReplayRequest{SubscriptionNamespace: "shop", SubscriptionName: "orders", SubscriptionUID: "uid-a", Consumer: "sub-a", RequestID: "req-1"}
	if n, err := q.Replay(ctxT(t), req); err != nil || n != 3 {
		t.Fatalf("Replay = %d, %v; want 3", n, err)
	}
	if got := ids(eventsOf(collectReceived(t, q, "sub-a", 3))); !slices.Equal(got, []string{"shop/1", "shop/2", "shop/3"}) {
		t.Errorf("delivered %q, want each event once", got)
	}
	if n, err := deadLettered(t, q, "shop", "orders"); err != nil || n != 0 {
		t.Errorf("DeadLettered = %d, %v; want 0", n, err)
	}
}

func TestReplayValidates(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	ensure(t, q, ConsumerSpec{Name: "sub-a", Namespace: "shop", Patterns: []string{">"}})
	good := ReplayRequest{SubscriptionNamespace: "shop", SubscriptionName: "orders", SubscriptionUID: "u", Consumer: "sub-a"}
	for name, mutate := range map[string]func(*ReplayRequest){
		"no namespace":         func(r *ReplayRequest) { r.SubscriptionNamespace = "" },
		"no name":              func(r *ReplayRequest) { r.SubscriptionName = "" },
		"no UID":               func(r *ReplayRequest) { r.SubscriptionUID = "" },
		"bad consumer":         func(r *ReplayRequest) { r.Consumer = "orders" },
		"until before since":   func(r *ReplayRequest) { r.Since, r.Until = t0, t0.Add(-time.Second) },
		"request id with a CR": func(r *ReplayRequest) { r.RequestID = "a\rb" },
	} {
		r := good
		mutate(&r)
		if n, err := q.Replay(ctxT(t), r); err == nil || n != 0 {
			t.Errorf("%s: Replay = %d, %v; want an error", name, n, err)
		}
	}
	r := good
	r.Consumer = "sub-missing"
	if _, err := q.Replay(ctxT(t), r); !errors.Is(err, ErrConsumerNotFound) {
		t.Errorf("Replay to a missing consumer: err = %v, want ErrConsumerNotFound", err)
	}
}

// TestOldEventsStreamIsUpgraded opens a store written before direct
// subjects existed: the events stream gains the direct subject in place,
// keeping its events, and an existing consumer gains its direct filter.
func TestOldEventsStreamIsUpgraded(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DispatcherNamespace: dispNs, DispatcherName: dispName, DataDir: dir, Logger: testLogger(t)}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	names := NamesFor(dispNs, dispName)
	func() {
		srv, err := startEmbedded(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		}()
		nc, err := nats.Connect("", nats.InProcessServer(srv))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(ctxT(t), jetstream.StreamConfig{
			Name: names.EventsStream, Subjects: []string{names.EventsPrefix + ".>"},
			Retention: jetstream.InterestPolicy, Discard: jetstream.DiscardNew,
			MaxBytes: cfg.MaxBytes, MaxAge: cfg.MaxAge, Duplicates: cfg.DedupWindow,
			AllowAtomicPublish: true, Storage: jetstream.FileStorage,
		}); err != nil {
			t.Fatalf("creating the old events stream: %v", err)
		}
		old, err := (&Queue{names: names}).consumerConfig(ConsumerSpec{Name: "sub-old", Namespace: "shop", Patterns: []string{">"}, MaxAckPending: 100, AckWait: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		old.FilterSubjects = old.FilterSubjects[:len(old.FilterSubjects)-1]
		if _, err := js.CreateConsumer(ctxT(t), names.EventsStream, old); err != nil {
			t.Fatalf("creating the old consumer: %v", err)
		}
		m, err := (&Queue{names: names}).eventMsg(ev("shop", "1", "order.created"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctxT(t), m); err != nil {
			t.Fatalf("publishing to the old stream: %v", err)
		}
	}()

	q := openEmbedded(t, dir, nil)
	st, err := q.js.Stream(ctxT(t), q.names.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info := st.CachedInfo()
	if want := []string{names.EventsPrefix + ".>", names.DirectPrefix + ".>"}; !slices.Equal(info.Config.Subjects, want) {
		t.Fatalf("events stream subjects = %q, want %q", info.Config.Subjects, want)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("upgraded events stream holds %d messages, want the 1 stored before", info.State.Msgs)
	}
	ensure(t, q, ConsumerSpec{Name: "sub-old", Namespace: "shop", Patterns: []string{">"}})
	if _, err := q.PublishDirect(ctxT(t), "sub-old", ev("shop", "2", "order.created"), "m-2"); err != nil {
		t.Fatalf("PublishDirect after the upgrade: %v", err)
	}
	got := collectReceived(t, q, "sub-old", 2)
	if got[0].Event.ID != "1" || got[0].Direct || got[1].Event.ID != "2" || !got[1].Direct {
		t.Errorf("after the upgrade sub-old received %+v, want event 1 routed and event 2 direct", got)
	}
}
