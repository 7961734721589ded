package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	dispNs   = "hookline-system"
	dispName = "default"
	// hangGuard only keeps a hung test from running until the binary's own
	// timeout; no test depends on anything finishing sooner.
	hangGuard = 10 * time.Minute
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func openEmbedded(t *testing.T, dir string, mutate func(*Config)) *Queue {
	t.Helper()
	cfg := Config{DispatcherNamespace: dispNs, DispatcherName: dispName, DataDir: dir, Logger: testLogger(t)}
	if mutate != nil {
		mutate(&cfg)
	}
	q, err := Open(ctxT(t), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// openPeer opens a second Queue, as another dispatcher instance would, on
// the streams of q, whose embedded server must listen on the network.
func openPeer(t *testing.T, q *Queue) *Queue {
	t.Helper()
	other, err := Open(ctxT(t), Config{DispatcherNamespace: q.cfg.DispatcherNamespace, DispatcherName: q.cfg.DispatcherName,
		URL: q.ClientURL(), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open a second instance: %v", err)
	}
	t.Cleanup(func() { _ = other.Close() })
	return other
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

func ev(ns, id, typ string) Event {
	return Event{ID: id, Namespace: ns, Type: typ, Time: t0, Data: json.RawMessage(fmt.Sprintf(`{"id":%q}`, id))}
}

func sameEvent(a, b Event) bool {
	return a.ID == b.ID && a.Namespace == b.Namespace && a.Type == b.Type && a.Time.Equal(b.Time) && string(a.Data) == string(b.Data)
}

func mustPublish(t *testing.T, q *Queue, events ...Event) []PublishResult {
	t.Helper()
	res, err := q.Publish(ctxT(t), events)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(res) != len(events) {
		t.Fatalf("Publish returned %d results for %d events", len(res), len(events))
	}
	return res
}

func messages(t *testing.T, q *Queue) uint64 {
	t.Helper()
	u, err := q.Usage(ctxT(t))
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	return u.Messages
}

// waitFor polls cond; only the hang guard ends the wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx := ctxT(t)
	for !cond() {
		if !sleepCtx(ctx, 20*time.Millisecond) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

var errEnough = errors.New("read enough")

// readN reads the events stream from sequence from until n events
// arrived. It fails as soon as the reader passed the last event stored
// when it began with fewer.
func readN(t *testing.T, q *Queue, from uint64, n int) []Stored {
	t.Helper()
	_, last, err := q.EventsBounds(ctxT(t))
	if err != nil {
		t.Fatalf("EventsBounds: %v", err)
	}
	return readUpTo(t, "events stream", last, from, n, q.Read)
}

// readUpTo reads with read from sequence from until n events arrived, or
// fails once past sequence last.
func readUpTo(t *testing.T, what string, last, from uint64, n int, read func(context.Context, uint64, func(Stored) error) error) []Stored {
	t.Helper()
	if last < max(from, 1) {
		t.Fatalf("reading %d events of the %s from %d: its last sequence is %d", n, what, from, last)
	}
	var got []Stored
	err := read(ctxT(t), from, func(s Stored) error {
		got = append(got, s)
		if len(got) == n || s.Seq >= last {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) || len(got) != n {
		t.Fatalf("reading the %s from %d: %v, after %d of %d events (%q at %v)", what, from, err, len(got), n, storedIDs(got), seqs(got))
	}
	return got
}

func seqs(got []Stored) []uint64 {
	out := make([]uint64, len(got))
	for i, s := range got {
		out[i] = s.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func storedIDs(got []Stored) []string {
	out := make([]string, len(got))
	for i, s := range got {
		out[i] = s.Event.Namespace + "/" + s.Event.ID
	}
	return out
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	q := openEmbedded(t, dir, nil)
	in := []Event{ev("shop", "1", "order.created"), ev("shop", "2", "order.paid")}
	in[1].Data = json.RawMessage(`{"amount": 12.50, "items":[1,2]}`)
	mustPublish(t, q, in[0])
	mustPublish(t, q, in[1])
	if err := q.SaveProgress(ctxT(t), []Checkpoint{{Key: "sub-a", Data: []byte(`{"floor":2}`)}}); err != nil {
		t.Fatalf("SaveProgress: %v", err)
	}
	if _, err := q.Park(ctxT(t), []Move{{Token: "sub-a", ID: "m1", Event: Stored{Event: in[0], Stored: t0, Attempts: 2}}}); err != nil {
		t.Fatalf("Park: %v", err)
	}
	if err := q.DeadLetter(ctxT(t), "shop", "orders", "uid-a", false, Stored{Seq: 1, Event: in[0]}, Failure{Attempts: 3}); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	q = openEmbedded(t, dir, nil)
	got := readN(t, q, 1, 2)
	if !slices.Equal(seqs(got), []uint64{1, 2}) {
		t.Fatalf("sequences after reopen = %v, want [1 2]", seqs(got))
	}
	for i := range in {
		if !sameEvent(got[i].Event, in[i]) || got[i].Direct != "" {
			t.Errorf("event %d after reopen = %+v (data %s), want %+v (data %s)", i, got[i], got[i].Event.Data, in[i], in[i].Data)
		}
	}
	cps := loadedCheckpoints(t, q)
	if len(cps) != 1 || string(cps["sub-a"].Data) != `{"floor":2}` {
		t.Errorf("checkpoints after reopen = %+v", cps)
	}
	moved := readBacklogN(t, q, "sub-a", 0, 1)
	if !sameEvent(moved[0].Event, in[0]) || moved[0].Attempts != 2 {
		t.Errorf("moved event after reopen = %+v", moved[0])
	}
	c, err := q.DeadLetterCounts(ctxT(t))
	if err != nil || c.Kept("shop", "orders") != 1 {
		t.Errorf("dead letters kept after reopen = %d, %v; want 1", c.Kept("shop", "orders"), err)
	}
}

func TestPublishDuplicates(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	batch := []Event{ev("shop", "1", "a"), ev("shop", "2", "a"), ev("shop", "3", "b.c")}
	for i, r := range mustPublish(t, q, batch...) {
		if r.Duplicate || r.Err != nil {
			t.Errorf("first batch result %d = %+v, want stored", i, r)
		}
	}
	if n := messages(t, q); n != 3 {
		t.Fatalf("stream holds %d messages after first batch, want 3", n)
	}

	// The same single event again.
	if r := mustPublish(t, q, ev("shop", "1", "a")); !r[0].Duplicate {
		t.Errorf("republished single event: %+v, want Duplicate", r[0])
	}
	// A batch mixing a stored id, a new id, the new id again, and the same
	// id in another namespace.
	mixed := []Event{ev("shop", "2", "a"), ev("shop", "4", "a"), ev("shop", "4", "a"), ev("other", "1", "a")}
	res := mustPublish(t, q, mixed...)
	want := []bool{true, false, true, false}
	for i, r := range res {
		if r.Duplicate != want[i] || r.Err != nil {
			t.Errorf("mixed batch result %d = %+v, want Duplicate=%v", i, r, want[i])
		}
	}
	if n := messages(t, q); n != 5 {
		t.Fatalf("stream holds %d messages, want 5 (1,2,3,4 in shop and 1 in other)", n)
	}
	if got := storedIDs(readN(t, q, 1, 5)); !slices.Equal(got, []string{"shop/1", "shop/2", "shop/3", "shop/4", "other/1"}) {
		t.Errorf("stream holds %q in order", got)
	}
}

func TestGroupCommit(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	const n = 300
	before := q.PublishRoundTrips()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			res, err := q.Publish(ctxT(t), []Event{ev("shop", fmt.Sprint(i), "order.created")})
			if err == nil && (res[0].Duplicate || res[0].Err != nil) {
				err = fmt.Errorf("event %d: %+v", i, res[0])
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Publish: %v", err)
	}
	if m := messages(t, q); m != n {
		t.Fatalf("stream holds %d messages, want %d", m, n)
	}
	trips := q.PublishRoundTrips() - before
	t.Logf("%d concurrent single-event publishes took %d store requests", n, trips)
	if trips >= n {
		t.Errorf("store requests = %d, want fewer than %d events (group commit)", trips, n)
	}
	got := readN(t, q, 1, n)
	seen := map[string]bool{}
	for _, s := range got {
		seen[s.Event.ID] = true
	}
	if len(seen) != n {
		t.Errorf("read %d distinct events, want %d", len(seen), n)
	}
}

// bigEvent is an event of about 1 KiB.
func bigEvent(id string) Event {
	e := ev("shop", id, "blob")
	e.Data = json.RawMessage(`{"pad":"` + strings.Repeat("x", 900) + `"}`)
	return e
}

func TestPublishRefusesWhenFull(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), func(c *Config) { c.MaxBytes = 4096 })
	var stored int
	var err error
	for i := 0; i < 20; i++ {
		_, err = q.Publish(ctxT(t), []Event{bigEvent(fmt.Sprint(i))})
		if err != nil {
			break
		}
		stored++
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Publish into a full stream: err = %v, want ErrFull", err)
	}
	if stored == 0 {
		t.Fatalf("nothing fitted into 4 KiB")
	}
	// A batch is refused whole.
	res, err := q.Publish(ctxT(t), []Event{bigEvent("b1"), bigEvent("b2")})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("batch into a full stream: err = %v, want ErrFull", err)
	}
	for i, r := range res {
		if !errors.Is(r.Err, ErrFull) {
			t.Errorf("batch result %d = %+v, want ErrFull", i, r)
		}
	}
	if m := messages(t, q); m != uint64(stored) {
		t.Errorf("stream holds %d messages, want the %d that fitted", m, stored)
	}
	// Purging what was delivered makes room again.
	_, last, err := q.EventsBounds(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.PurgeEvents(ctxT(t), last+1); err != nil {
		t.Fatalf("PurgeEvents: %v", err)
	}
	if _, err := q.Publish(ctxT(t), []Event{bigEvent("after-purge")}); err != nil {
		t.Errorf("Publish after purging the full stream: %v", err)
	}
}

func TestPublishRejectsInvalidEvents(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	bad := []Event{
		{ID: "", Namespace: "shop", Type: "a", Time: t0, Data: json.RawMessage(`{}`)},
		{ID: "x\ny", Namespace: "shop", Type: "a", Time: t0, Data: json.RawMessage(`{}`)},
		{ID: " x", Namespace: "shop", Type: "a", Time: t0, Data: json.RawMessage(`{}`)},
		{ID: strings.Repeat("x", maxEventIDLength+1), Namespace: "shop", Type: "a", Time: t0, Data: json.RawMessage(`{}`)},
		{ID: "x", Namespace: "sh.op", Type: "a", Time: t0, Data: json.RawMessage(`{}`)},
		{ID: "x", Namespace: "", Type: "a", Time: t0, Data: json.RawMessage(`{}`)},
		{ID: "x", Namespace: "shop", Type: "a.*", Time: t0, Data: json.RawMessage(`{}`)},
		{ID: "x", Namespace: "shop", Type: "a", Data: json.RawMessage(`{}`)},
		{ID: "x", Namespace: "shop", Type: "a", Time: t0},
	}
	for i, b := range bad {
		if _, err := q.Publish(ctxT(t), []Event{ev("shop", "ok", "a"), b}); err == nil {
			t.Errorf("invalid event %d accepted", i)
		}
	}
	if m := messages(t, q); m != 0 {
		t.Errorf("stream holds %d messages after refused publishes, want 0", m)
	}
}

func TestHealthyAndClose(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	if err := q.Healthy(); err != nil {
		t.Fatalf("Healthy on an open queue: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := q.Healthy(); err == nil {
		t.Errorf("Healthy after Close = nil")
	}
	if _, err := q.Publish(context.Background(), []Event{ev("shop", "1", "a")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	// Readers end with an error instead of retrying for ever.
	if err := q.Read(ctxT(t), 1, func(Stored) error { return nil }); err == nil {
		t.Errorf("Read after Close = nil, want an error")
	}
	if err := q.WatchProgress(ctxT(t), func(Checkpoint) {}, func() {}); err == nil {
		t.Errorf("WatchProgress after Close = nil, want an error")
	}
}

func TestOpenValidatesConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no name":           {DispatcherNamespace: "a", DataDir: t.TempDir()},
		"no namespace":      {DispatcherName: "b", DataDir: t.TempDir()},
		"embedded replicas": {DispatcherNamespace: "a", DispatcherName: "b", DataDir: t.TempDir(), Replicas: 3},
		"no data dir":       {DispatcherNamespace: "a", DispatcherName: "b"},
		"too many replicas": {DispatcherNamespace: "a", DispatcherName: "b", URL: "nats://127.0.0.1:1", Replicas: 7},
		"negative replicas": {DispatcherNamespace: "a", DispatcherName: "b", URL: "nats://127.0.0.1:1", Replicas: -1},
		"negative batch":    {DispatcherNamespace: "a", DispatcherName: "b", DataDir: t.TempDir(), MaxBatch: -1},
		"bad listen":        {DispatcherNamespace: "a", DispatcherName: "b", DataDir: t.TempDir(), EmbeddedListen: "127.0.0.1:port"},
	} {
		if q, err := Open(context.Background(), cfg); err == nil {
			_ = q.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

// TestServerRefusesBatchWithDuplicate records the server behaviour that
// Publish works around: an atomic batch holding an id already stored, or the
// same id twice, is refused whole with error 10201.
func TestServerRefusesBatchWithDuplicate(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	mustPublish(t, q, ev("shop", "1", "a"))
	for name, events := range map[string][]Event{
		"stored id": {ev("shop", "2", "a"), ev("shop", "1", "a")},
		"id twice":  {ev("shop", "3", "a"), ev("shop", "3", "a")},
	} {
		msgs := make([]*nats.Msg, len(events))
		for i, e := range events {
			m, err := q.eventMsg(e)
			if err != nil {
				t.Fatal(err)
			}
			msgs[i] = m
		}
		_, err := q.atomicBatch(ctxT(t), msgs)
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != codeBatchContainsDuplicate {
			t.Errorf("%s: atomic batch err = %v, want API error %d", name, err, codeBatchContainsDuplicate)
		}
	}
	if m := messages(t, q); m != 1 {
		t.Errorf("stream holds %d messages, want 1: refused batches store nothing", m)
	}
}

func TestEmbeddedServerSettings(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	if !q.Embedded() {
		t.Errorf("Embedded() = false for an embedded queue")
	}
	if !q.srv.JetStreamConfig().SyncAlways {
		t.Errorf("embedded server does not sync every write")
	}
	if u := q.ClientURL(); u != "" {
		t.Errorf("embedded server without EmbeddedListen has client URL %q", u)
	}

	q = openEmbedded(t, t.TempDir(), func(c *Config) { c.EmbeddedListen = "127.0.0.1:0" })
	nc, err := nats.Connect(q.ClientURL())
	if err != nil {
		t.Fatalf("connecting to the listening embedded server: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{q.Names().EventsStream, q.Names().ProgressStream, q.Names().BacklogStream, q.Names().DeadLetterStream} {
		if _, err := js.Stream(ctxT(t), name); err != nil {
			t.Errorf("stream %s not visible to a network client: %v", name, err)
		}
	}
	// Another instance on the same streams sees what this one stores.
	other := openPeer(t, q)
	if other.Embedded() {
		t.Errorf("Embedded() = true for a queue connected by URL")
	}
	mustPublish(t, q, ev("shop", "1", "a"))
	if got := readN(t, other, 1, 1); got[0].Event.ID != "1" {
		t.Errorf("the other instance read %+v", got[0])
	}
}

// TestOldEventsStreamIsUpgraded opens a store of the earlier layout: an
// interest-retention events stream with one durable consumer per
// subscription, and a stats stream. The events stream becomes a limits
// stream in place, keeping its events; the subscription consumers and the
// stats stream are removed.
func TestOldEventsStreamIsUpgraded(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DispatcherNamespace: dispNs, DispatcherName: dispName, DataDir: dir, Logger: testLogger(t)}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	names := NamesFor(dispNs, dispName)
	statsStream := strings.TrimSuffix(names.EventsStream, "_EVENTS") + "_STATS"
	old := &Queue{names: names}
	in := []Event{ev("shop", "1", "order.created"), ev("shop", "2", "refund"), ev("shop", "3", "order.paid")}
	direct := ev("shop", "4", "invoice.sent")
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
			Name: names.EventsStream, Subjects: []string{names.EventsPrefix + ".>", names.DirectPrefix + ".>"},
			Retention: jetstream.InterestPolicy, Discard: jetstream.DiscardNew,
			MaxBytes: cfg.MaxBytes, MaxAge: cfg.MaxAge, Duplicates: cfg.DedupWindow,
			AllowAtomicPublish: true, Storage: jetstream.FileStorage,
		}); err != nil {
			t.Fatalf("creating the old events stream: %v", err)
		}
		for name, filters := range map[string][]string{
			"sub-aaa":   {names.EventsPrefix + ".shop.>", names.DirectPrefix + ".sub-aaa"},
			"sub-bbb":   {names.EventsPrefix + ".shop.order.*", names.DirectPrefix + ".sub-bbb"},
			"ops-audit": {names.EventsPrefix + ".>"},
		} {
			if _, err := js.CreateConsumer(ctxT(t), names.EventsStream, jetstream.ConsumerConfig{
				Durable: name, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy,
				MaxDeliver: -1, FilterSubjects: filters,
			}); err != nil {
				t.Fatalf("creating the old consumer %s: %v", name, err)
			}
		}
		if _, err := js.CreateStream(ctxT(t), jetstream.StreamConfig{
			Name: statsStream, Subjects: []string{"hookline." + dispNs + "." + dispName + ".stats"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
		}); err != nil {
			t.Fatalf("creating the old stats stream: %v", err)
		}
		if _, err := js.CreateConsumer(ctxT(t), statsStream, jetstream.ConsumerConfig{Durable: "status-writer", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
			t.Fatalf("creating the old stats consumer: %v", err)
		}
		if _, err := js.Publish(ctxT(t), "hookline."+dispNs+"."+dispName+".stats", []byte(`{"n":1}`)); err != nil {
			t.Fatalf("publishing stats: %v", err)
		}
		for _, e := range in {
			m, err := old.eventMsg(e)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.PublishMsg(ctxT(t), m); err != nil {
				t.Fatalf("publishing to the old stream: %v", err)
			}
		}
		m, err := old.directMsg("sub-aaa", direct, "m-4")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctxT(t), m); err != nil {
			t.Fatalf("publishing a direct event to the old stream: %v", err)
		}
	}()

	check := func(when string, q *Queue) {
		t.Helper()
		st, err := q.js.Stream(ctxT(t), q.names.EventsStream)
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo()
		if info.Config.Retention != jetstream.LimitsPolicy {
			t.Errorf("%s: events stream retention = %v, want limits", when, info.Config.Retention)
		}
		if info.State.Msgs != 4 {
			t.Fatalf("%s: events stream holds %d messages, want the 4 stored before", when, info.State.Msgs)
		}
		var consumers []string
		lister := st.ConsumerNames(ctxT(t))
		for n := range lister.Name() {
			consumers = append(consumers, n)
		}
		if err := lister.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(consumers, []string{"ops-audit"}) {
			t.Errorf("%s: events stream consumers = %q, want only the one that is not a subscription's", when, consumers)
		}
		if _, err := q.js.Stream(ctxT(t), statsStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("%s: stats stream lookup err = %v, want ErrStreamNotFound", when, err)
		}
		got := readN(t, q, 1, 4)
		if !slices.Equal(seqs(got), []uint64{1, 2, 3, 4}) {
			t.Fatalf("%s: read sequences %v, want [1 2 3 4]", when, seqs(got))
		}
		for i, e := range append(slices.Clone(in), direct) {
			if !sameEvent(got[i].Event, e) {
				t.Errorf("%s: event %d = %+v, want %+v", when, i, got[i].Event, e)
			}
		}
		if got[3].Direct != "sub-aaa" || got[0].Direct != "" {
			t.Errorf("%s: direct tokens %q and %q, want \"\" and sub-aaa", when, got[0].Direct, got[3].Direct)
		}
	}
	q := openEmbedded(t, dir, nil)
	check("after the upgrade", q)
	// The stream works as a new one does: new events are appended.
	mustPublish(t, q, ev("shop", "5", "order.created"))
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openEmbedded(t, dir, nil)
	if n := messages(t, q); n != 5 {
		t.Errorf("after reopening the upgraded store: %d messages, want 5", n)
	}
}
