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
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	dispNs   = "hookline-system"
	dispName = "default"
	// deadline bounds waits far above any plausible duration: a slow
	// machine must not fail a test; the test binary's -timeout is the guard.
	deadline = 10 * time.Minute
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
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	q, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

func ev(ns, id, typ string) Event {
	return Event{ID: id, Namespace: ns, Type: typ, Time: t0, Data: json.RawMessage(fmt.Sprintf(`{"id":%q}`, id))}
}

func ensure(t *testing.T, q *Queue, spec ConsumerSpec) {
	t.Helper()
	if spec.MaxAckPending == 0 {
		spec.MaxAckPending = 100
	}
	if spec.AckWait == 0 {
		spec.AckWait = 30 * time.Second
	}
	if err := q.EnsureConsumer(ctxT(t), spec); err != nil {
		t.Fatalf("EnsureConsumer(%s): %v", spec.Name, err)
	}
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

// backlog and deadLettered read one subscription's figures through Counts.
func backlog(t *testing.T, q *Queue, consumer string) (int64, error) {
	c, err := q.Counts(ctxT(t))
	if err != nil {
		return 0, err
	}
	return c.Backlog(consumer), nil
}

func deadLettered(t *testing.T, q *Queue, ns, name string) (uint64, error) {
	c, err := q.Counts(ctxT(t))
	if err != nil {
		return 0, err
	}
	return c.DeadLettered(ns, name), nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// collect consumes name, acking everything, until want messages arrived,
// then waits a little longer for unexpected extra deliveries.
func collect(t *testing.T, q *Queue, name string, want int) []Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []Event
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, name, 4, func(ctx context.Context, m *Message) {
			if err := m.Ack(ctx); err != nil {
				t.Errorf("Ack: %v", err)
			}
			mu.Lock()
			got = append(got, m.Event)
			mu.Unlock()
		})
	}()
	waitFor(t, fmt.Sprintf("%d messages on %s", want, name), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= want
	})
	// Extra deliveries would arrive right behind the wanted ones; the
	// backlog check below catches anything still pending.
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

func ids(events []Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Namespace + "/" + e.ID
	}
	slices.Sort(out)
	return out
}

func TestReopenKeepsEvents(t *testing.T) {
	dir := t.TempDir()
	q := openEmbedded(t, dir, nil)
	ensure(t, q, ConsumerSpec{Name: "sub-a", Namespace: "shop", Patterns: []string{">"}})
	in := []Event{ev("shop", "1", "order.created"), ev("shop", "2", "order.paid")}
	in[1].Data = json.RawMessage(`{"amount": 12.50, "items":[1,2]}`)
	mustPublish(t, q, in[0])
	mustPublish(t, q, in[1])
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	q = openEmbedded(t, dir, nil)
	got := collect(t, q, "sub-a", 2)
	slices.SortFunc(got, func(a, b Event) int { return strings.Compare(a.ID, b.ID) })
	if len(got) != 2 {
		t.Fatalf("got %d events after reopen, want 2", len(got))
	}
	for i := range in {
		if got[i].ID != in[i].ID || got[i].Namespace != in[i].Namespace || got[i].Type != in[i].Type ||
			!got[i].Time.Equal(in[i].Time) || string(got[i].Data) != string(in[i].Data) {
			t.Errorf("event %d after reopen = %+v (data %s), want %+v (data %s)", i, got[i], got[i].Data, in[i], in[i].Data)
		}
	}
}

func TestPublishDuplicates(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	ensure(t, q, ConsumerSpec{Name: "sub-all", Namespace: "shop", Patterns: []string{">"}})
	ensure(t, q, ConsumerSpec{Name: "sub-other", Namespace: "other", Patterns: []string{">"}})

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
	if got := ids(collect(t, q, "sub-all", 4)); !slices.Equal(got, []string{"shop/1", "shop/2", "shop/3", "shop/4"}) {
		t.Errorf("shop consumer got %q", got)
	}
	if got := ids(collect(t, q, "sub-other", 1)); !slices.Equal(got, []string{"other/1"}) {
		t.Errorf("other consumer got %q", got)
	}
}

func TestGroupCommit(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	ensure(t, q, ConsumerSpec{Name: "sub-all", Namespace: "shop", Patterns: []string{">"}})
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
}

func TestPublishRefusesWhenFull(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), func(c *Config) { c.MaxBytes = 4096 })
	ensure(t, q, ConsumerSpec{Name: "sub-all", Namespace: "shop", Patterns: []string{">"}})
	big := func(id string) Event {
		e := ev("shop", id, "blob")
		e.Data = json.RawMessage(fmt.Sprintf(`{"pad":%q}`, make([]byte, 0)))
		pad := make([]byte, 900)
		for i := range pad {
			pad[i] = 'x'
		}
		e.Data = json.RawMessage(`{"pad":"` + string(pad) + `"}`)
		return e
	}
	var stored int
	var err error
	for i := 0; i < 20; i++ {
		_, err = q.Publish(ctxT(t), []Event{big(fmt.Sprint(i))})
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
	res, err := q.Publish(ctxT(t), []Event{big("b1"), big("b2")})
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
}

func TestPublishRejectsInvalidEvents(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	ensure(t, q, ConsumerSpec{Name: "sub-all", Namespace: "shop", Patterns: []string{">"}})
	bad := []Event{
		{ID: "", Namespace: "shop", Type: "a", Time: t0, Data: json.RawMessage(`{}`)},
		{ID: "x\ny", Namespace: "shop", Type: "a", Time: t0, Data: json.RawMessage(`{}`)},
		{ID: "x", Namespace: "sh.op", Type: "a", Time: t0, Data: json.RawMessage(`{}`)},
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

func TestRoutingAndInterestRetention(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	ensure(t, q, ConsumerSpec{Name: "sub-orders", Namespace: "shop", Patterns: []string{"order.*"}})
	ensure(t, q, ConsumerSpec{Name: "sub-mixed", Namespace: "shop", Patterns: []string{"order.created", "invoice.>"}})
	ensure(t, q, ConsumerSpec{Name: "sub-elsewhere", Namespace: "other", Patterns: []string{">"}})

	mustPublish(t, q,
		ev("shop", "1", "order.created"),
		ev("shop", "2", "order.paid"),
		ev("shop", "3", "order.item.added"),
		ev("shop", "4", "invoice.sent"),
		ev("shop", "5", "invoice.sent.late"),
		ev("shop", "6", "refund"),
		ev("other", "7", "order.created"),
	)
	// "order.item.added" and "refund" have no interested consumer, so
	// JetStream never keeps them.
	if m := messages(t, q); m != 5 {
		t.Errorf("stream holds %d messages, want 5", m)
	}
	if got := ids(collect(t, q, "sub-orders", 2)); !slices.Equal(got, []string{"shop/1", "shop/2"}) {
		t.Errorf("sub-orders got %q", got)
	}
	if got := ids(collect(t, q, "sub-mixed", 3)); !slices.Equal(got, []string{"shop/1", "shop/4", "shop/5"}) {
		t.Errorf("sub-mixed got %q", got)
	}
	// Not yet consumed by sub-elsewhere: only its event remains.
	waitFor(t, "acked events to be removed", func() bool { return messages(t, q) == 1 })
	if got := ids(collect(t, q, "sub-elsewhere", 1)); !slices.Equal(got, []string{"other/7"}) {
		t.Errorf("sub-elsewhere got %q", got)
	}
	waitFor(t, "stream to be empty", func() bool { return messages(t, q) == 0 })

	// Changing patterns takes effect for later events.
	ensure(t, q, ConsumerSpec{Name: "sub-orders", Namespace: "shop", Patterns: []string{"refund"}})
	mustPublish(t, q, ev("shop", "8", "order.paid"), ev("shop", "9", "refund"))
	if got := ids(collect(t, q, "sub-orders", 1)); !slices.Equal(got, []string{"shop/9"}) {
		t.Errorf("sub-orders after update got %q", got)
	}
	for _, name := range []string{"sub-orders", "sub-mixed", "sub-elsewhere"} {
		b, err := backlog(t, q, name)
		if err != nil {
			t.Fatalf("Backlog(%s): %v", name, err)
		}
		if b != 0 {
			t.Errorf("Backlog(%s) = %d after consuming everything, want 0", name, b)
		}
	}
}

// TestServerFilterOverlap records how JetStream treats overlapping filter
// subjects, which FilterSubjects is built around.
func TestServerFilterOverlap(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	p := q.names.EventsPrefix + ".shop."
	_, err := q.js.CreateOrUpdateConsumer(ctxT(t), q.names.EventsStream, jetstream.ConsumerConfig{
		Durable: "sub-subset", AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubjects: []string{p + "a.*", p + "a.b"},
	})
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10138 {
		t.Errorf("consumer with filters a.* and a.b: err = %v, want API error 10138", err)
	}
	_, err = q.js.CreateOrUpdateConsumer(ctxT(t), q.names.EventsStream, jetstream.ConsumerConfig{
		Durable: "sub-partial", AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubjects: []string{p + "a.*.c", p + "a.b.*"},
	})
	if err != nil {
		t.Fatalf("consumer with partially overlapping filters: %v", err)
	}
	mustPublish(t, q, ev("shop", "1", "a.b.c"), ev("shop", "2", "a.x.c"))
	if got := ids(collect(t, q, "sub-partial", 2)); !slices.Equal(got, []string{"shop/1", "shop/2"}) {
		t.Errorf("partially overlapping filters delivered %q, want each event once", got)
	}
}

func TestRetryAndDeadLetter(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	ensure(t, q, ConsumerSpec{Name: "sub-r", Namespace: "shop", Patterns: []string{">"}, MaxAckPending: 10})
	mustPublish(t, q, ev("shop", "1", "a"), ev("shop", "2", "a"), ev("shop", "3", "a"))
	if b, err := backlog(t, q, "sub-r"); err != nil || b != 3 {
		t.Fatalf("Backlog before consuming = %d, %v; want 3", b, err)
	}

	const delay = 700 * time.Millisecond
	type seen struct {
		id      string
		attempt int
		at      time.Time
	}
	var mu sync.Mutex
	var log []seen
	retriedAt := map[string]time.Time{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, "sub-r", 3, func(ctx context.Context, m *Message) {
			mu.Lock()
			log = append(log, seen{m.Event.ID, m.Attempt, time.Now()})
			mu.Unlock()
			switch {
			case m.Event.ID == "1":
				_ = m.Ack(ctx)
			case m.Event.ID == "2" && m.Attempt == 1:
				mu.Lock()
				retriedAt["2"] = time.Now()
				mu.Unlock()
				if err := m.Retry(ctx, delay); err != nil {
					t.Errorf("Retry: %v", err)
				}
			case m.Event.ID == "2":
				_ = m.Ack(ctx)
			case m.Event.ID == "3" && m.Attempt == 1:
				_ = m.Retry(ctx, time.Hour)
			}
		})
	}()
	waitFor(t, "event 2 to be redelivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(log) >= 4
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	var redelivered *seen
	for i, s := range log {
		if s.id == "2" && s.attempt == 2 {
			redelivered = &log[i]
		}
		if s.id == "3" && s.attempt > 1 {
			t.Errorf("event 3 redelivered before its one-hour delay")
		}
	}
	if redelivered == nil {
		t.Fatalf("event 2 not redelivered with Attempt 2; deliveries: %+v", log)
	}
	if gap := redelivered.at.Sub(retriedAt["2"]); gap < delay {
		t.Errorf("event 2 redelivered %s after Retry, before the %s delay", gap, delay)
	}
	// Event 3 waits for its delayed retry and still counts.
	if b, err := backlog(t, q, "sub-r"); err != nil || b != 1 {
		t.Errorf("Backlog with one delayed retry = %d, %v; want 1", b, err)
	}

	// Dead-letter a fresh event; event 3 stays parked in its delay.
	mustPublish(t, q, ev("shop", "4", "order.failed"))
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	dlDone := make(chan struct{})
	go func() {
		done <- q.Consume(ctx, "sub-r", 1, func(ctx context.Context, m *Message) {
			if m.Event.ID != "4" {
				return
			}
			err := m.DeadLetter(ctx, "shop", "orders.eu", "uid-1", Failure{
				Class: "HTTPStatus", StatusCode: 500, Message: "server said:\nboom", Attempts: 8,
			})
			if err != nil {
				t.Errorf("DeadLetter: %v", err)
			}
			close(dlDone)
		})
	}()
	select {
	case <-dlDone:
	case <-time.After(deadline):
		t.Fatal("event 4 not delivered")
	}
	cancel()
	<-done

	n, err := deadLettered(t, q, "shop", "orders.eu")
	if err != nil || n != 1 {
		t.Fatalf("DeadLettered = %d, %v; want 1", n, err)
	}
	if n, _ := deadLettered(t, q, "shop", "other"); n != 0 {
		t.Errorf("DeadLettered for another subscription = %d, want 0", n)
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
	// The original is gone: only event 3 (delayed retry) is left.
	if b, err := backlog(t, q, "sub-r"); err != nil || b != 1 {
		t.Errorf("Backlog after dead-lettering = %d, %v; want 1", b, err)
	}
	waitFor(t, "dead-lettered original to leave the stream", func() bool { return messages(t, q) == 1 })
}

func TestConsumeHonoursConcurrency(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	ensure(t, q, ConsumerSpec{Name: "sub-c", Namespace: "shop", Patterns: []string{">"}, MaxAckPending: 50})
	var batch []Event
	for i := range 40 {
		batch = append(batch, ev("shop", fmt.Sprint(i), "a"))
	}
	mustPublish(t, q, batch...)
	const limit = 3
	var inFlight, maxInFlight, handled atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, "sub-c", limit, func(ctx context.Context, m *Message) {
			n := inFlight.Add(1)
			for {
				old := maxInFlight.Load()
				if n <= old || maxInFlight.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
			inFlight.Add(-1)
			_ = m.Ack(ctx)
			handled.Add(1)
		})
	}()
	waitFor(t, "all events handled", func() bool { return handled.Load() == 40 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if m := maxInFlight.Load(); m > limit || m < 2 {
		t.Errorf("at most %d handlers ran at once, want between 2 and %d", m, limit)
	}
}

func TestPausedConsumer(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	spec := ConsumerSpec{Name: "sub-p", Namespace: "shop", Patterns: []string{">"}, Paused: true}
	ensure(t, q, spec)
	c, err := q.js.Consumer(ctxT(t), q.names.EventsStream, "sub-p")
	if err != nil {
		t.Fatal(err)
	}
	if !c.CachedInfo().Paused {
		t.Fatalf("consumer not paused")
	}
	mustPublish(t, q, ev("shop", "1", "a"))
	// The server updates a consumer's pending count shortly after a store.
	waitFor(t, "the paused consumer's backlog to count the event (events kept)", func() bool {
		b, err := backlog(t, q, "sub-p")
		return err == nil && b == 1
	})
	spec.Paused = false
	ensure(t, q, spec)
	c, err = q.js.Consumer(ctxT(t), q.names.EventsStream, "sub-p")
	if err != nil {
		t.Fatal(err)
	}
	if c.CachedInfo().Paused {
		t.Fatalf("consumer still paused after resume: %+v", c.CachedInfo().Config.PauseUntil)
	}
	if got := ids(collect(t, q, "sub-p", 1)); !slices.Equal(got, []string{"shop/1"}) {
		t.Errorf("resumed consumer got %q", got)
	}
}

// TestGoneGeneration: a replica that got a 410 records it on the consumer,
// where another replica (another Queue on the same streams) reads it.
func TestGoneGeneration(t *testing.T) {
	dir := t.TempDir()
	q := openEmbedded(t, dir, func(c *Config) { c.EmbeddedListen = "127.0.0.1:0" })
	other, err := Open(ctxT(t), Config{DispatcherNamespace: q.cfg.DispatcherNamespace, DispatcherName: q.cfg.DispatcherName,
		URL: q.ClientURL(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })

	if g, err := other.GoneGeneration(ctxT(t), "sub-g"); err != nil || g != 0 {
		t.Fatalf("GoneGeneration of a missing consumer = %d, %v; want 0", g, err)
	}
	spec := ConsumerSpec{Name: "sub-g", Namespace: "shop", Patterns: []string{">"}, Generation: 3, MaxAckPending: 1, AckWait: time.Minute}
	ensure(t, q, spec)
	if g, err := other.GoneGeneration(ctxT(t), "sub-g"); err != nil || g != 0 {
		t.Fatalf("GoneGeneration before a 410 = %d, %v; want 0", g, err)
	}
	spec.Gone = true
	ensure(t, q, spec)
	if g, err := other.GoneGeneration(ctxT(t), "sub-g"); err != nil || g != 3 {
		t.Fatalf("GoneGeneration after a 410 = %d, %v; want 3", g, err)
	}
	c, err := other.js.Consumer(ctxT(t), other.names.EventsStream, "sub-g")
	if err != nil || !c.CachedInfo().Paused {
		t.Fatalf("a gone subscription's consumer is not paused: %v", err)
	}
	// A new generation clears it.
	spec.Gone, spec.Generation = false, 4
	if err := other.EnsureConsumer(ctxT(t), spec); err != nil {
		t.Fatal(err)
	}
	if g, err := q.GoneGeneration(ctxT(t), "sub-g"); err != nil || g != 0 {
		t.Fatalf("GoneGeneration after a spec change = %d, %v; want 0", g, err)
	}
}

func TestConsumerLifecycle(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	ensure(t, q, ConsumerSpec{Name: "sub-1", Namespace: "shop", Patterns: []string{"a"}})
	ensure(t, q, ConsumerSpec{Name: "sub-2", Namespace: "shop", Patterns: []string{"a", "b.*"}, MaxAckPending: 7, AckWait: 45 * time.Second})
	names, err := q.ConsumerNames(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"sub-1", "sub-2"}) {
		t.Errorf("ConsumerNames = %q, want sub-1 and sub-2 (not the stats consumer)", names)
	}
	c, err := q.js.Consumer(ctxT(t), q.names.EventsStream, "sub-2")
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	p := q.names.EventsPrefix + ".shop."
	if !slices.Equal(cfg.FilterSubjects, []string{p + "a", p + "b.*", q.names.DirectPrefix + ".sub-2"}) || cfg.MaxAckPending != 7 ||
		cfg.AckWait != 45*time.Second || cfg.DeliverPolicy != jetstream.DeliverNewPolicy ||
		cfg.AckPolicy != jetstream.AckExplicitPolicy || cfg.MaxDeliver != -1 {
		t.Errorf("sub-2 config = %+v", cfg)
	}
	// Unchanged specs are served from the cache: deleting the consumer
	// behind the queue's back shows that no request was made.
	if err := q.js.DeleteConsumer(ctxT(t), q.names.EventsStream, "sub-1"); err != nil {
		t.Fatal(err)
	}
	ensure(t, q, ConsumerSpec{Name: "sub-1", Namespace: "shop", Patterns: []string{"a"}})
	if _, err := q.js.Consumer(ctxT(t), q.names.EventsStream, "sub-1"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("unchanged EnsureConsumer made a request: consumer lookup err = %v", err)
	}
	if err := q.DeleteConsumer(ctxT(t), "sub-1"); err != nil {
		t.Errorf("DeleteConsumer of a missing consumer: %v", err)
	}
	if err := q.DeleteConsumer(ctxT(t), "sub-2"); err != nil {
		t.Errorf("DeleteConsumer: %v", err)
	}
	if names, err := q.ConsumerNames(ctxT(t)); err != nil || len(names) != 0 {
		t.Errorf("ConsumerNames after deletes = %q, %v", names, err)
	}
	if err := q.EnsureConsumer(ctxT(t), ConsumerSpec{Name: "bad.name", Namespace: "shop", MaxAckPending: 1, AckWait: time.Second}); err == nil {
		t.Errorf("EnsureConsumer accepted a name with a dot")
	}
}

func TestStats(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	for _, p := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`} {
		if err := q.PublishStats(ctxT(t), []byte(p)); err != nil {
			t.Fatalf("PublishStats: %v", err)
		}
	}
	msgs, err := q.FetchStats(ctxT(t), 10, 2*time.Second)
	if err != nil {
		t.Fatalf("FetchStats: %v", err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, string(m.Data))
		if err := m.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
	}
	if !slices.Equal(got, []string{`{"n":1}`, `{"n":2}`, `{"n":3}`}) {
		t.Errorf("FetchStats = %q", got)
	}
	waitFor(t, "acked stats to be removed", func() bool {
		st, err := q.js.Stream(ctxT(t), q.names.StatsStream)
		return err == nil && st.CachedInfo().State.Msgs == 0
	})
	msgs, err = q.FetchStats(ctxT(t), 10, 200*time.Millisecond)
	if err != nil || len(msgs) != 0 {
		t.Errorf("FetchStats on an empty stream = %d messages, %v", len(msgs), err)
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
	if err := q.Healthy(); err == nil {
		t.Errorf("Healthy after Close = nil")
	}
	if _, err := q.Publish(context.Background(), []Event{ev("shop", "1", "a")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}

func TestOpenValidatesConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no name":           {DispatcherNamespace: "a", DataDir: t.TempDir()},
		"embedded replicas": {DispatcherNamespace: "a", DispatcherName: "b", DataDir: t.TempDir(), Replicas: 3},
		"no data dir":       {DispatcherNamespace: "a", DispatcherName: "b"},
		"too many replicas": {DispatcherNamespace: "a", DispatcherName: "b", URL: "nats://127.0.0.1:1", Replicas: 7},
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
	ensure(t, q, ConsumerSpec{Name: "sub-all", Namespace: "shop", Patterns: []string{">"}})
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
		err := q.atomicBatch(ctxT(t), msgs)
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
	if _, err := js.Stream(ctxT(t), q.Names().EventsStream); err != nil {
		t.Errorf("events stream not visible to a network client: %v", err)
	}
}

// TestEmbeddedServesMoreThanAThousandConsumers: nats-server caps a stream
// at 1,000 consumers unless told otherwise, and each subscription has one.
// The first thousand are kept in memory, which spares the test a synced
// file per consumer; the cap counts them all the same.
func TestEmbeddedServesMoreThanAThousandConsumers(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	for i := range 1000 {
		_, err := q.js.CreateConsumer(ctxT(t), q.Names().EventsStream, jetstream.ConsumerConfig{
			Durable: fmt.Sprintf("sub-%04d", i), AckPolicy: jetstream.AckExplicitPolicy, MemoryStorage: true,
			FilterSubject: q.Names().EventsPrefix + ".team.order.created",
		})
		if err != nil {
			t.Fatalf("creating consumer %d: %v", i, err)
		}
	}
	ensure(t, q, ConsumerSpec{Name: "sub-1000", Namespace: "team", Patterns: []string{"order.created"}})
	names, err := q.ConsumerNames(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1001 {
		t.Errorf("%d consumers, want 1001", len(names))
	}
}
