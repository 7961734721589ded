package dispatcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
)

var bodyTestStored = time.Date(2026, 11, 29, 12, 0, 0, 123456789, time.UTC)

func bodyTestEvent(id, data string) queue.Event {
	return queue.Event{ID: id, Namespace: "team", Type: "order.created", Time: time.Date(2026, 11, 29, 11, 59, 59, 5, time.UTC),
		Data: json.RawMessage(data)}
}

func wantBody(t testing.TB, ev queue.Event) string {
	t.Helper()
	b, err := delivery.Body(delivery.Message{ID: ev.ID, Type: ev.Type, Time: ev.Time, Data: ev.Data})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSharedBodies: every delivery of an event gets its body byte for
// byte as delivery.Body encodes it, encoded once however many
// subscriptions ask at once.
func TestSharedBodies(t *testing.T) {
	c := newSharedBodies()
	ev := bodyTestEvent("evt-1", `{ "order": "1042", "total": 42 }`)
	const subscriptions = 64
	got := make([][]byte, subscriptions)
	var wg sync.WaitGroup
	for i := range subscriptions {
		wg.Go(func() {
			// Each delivery decodes its own copy of the stored message.
			own := ev
			own.Data = bytes.Clone(ev.Data)
			var err error
			if got[i], err = c.body(own, bodyTestStored); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	want := wantBody(t, ev)
	for i, b := range got {
		if string(b) != want {
			t.Fatalf("delivery %d: body %s, want %s", i, b, want)
		}
		if &b[0] != &got[0][0] {
			t.Fatalf("delivery %d got a body of its own: the event was encoded more than once", i)
		}
	}

	// Another event under the same id (a producer reusing it after the
	// deduplication window) has a stored time of its own.
	later := bodyTestEvent("evt-1", `{"order":"1043"}`)
	if b, _ := c.body(later, bodyTestStored.Add(time.Hour)); string(b) != wantBody(t, later) {
		t.Errorf("body of a later event with the same id = %s, want %s", b, wantBody(t, later))
	}
	// Even one claiming the same stored time gets its own body.
	clash := bodyTestEvent("evt-1", `{"order":"1044"}`)
	if b, _ := c.body(clash, bodyTestStored); string(b) != wantBody(t, clash) {
		t.Errorf("body of a different event under the same key = %s, want %s", b, wantBody(t, clash))
	}
	if b, _ := c.body(ev, bodyTestStored); &b[0] != &got[0][0] {
		t.Error("the first event is no longer shared")
	}

	// Data that is not JSON: the same error as delivery.Body's.
	bad := bodyTestEvent("evt-bad", `{"order":`)
	_, err := c.body(bad, bodyTestStored)
	_, wantErr := delivery.Body(delivery.Message{ID: bad.ID, Type: bad.Type, Time: bad.Time, Data: bad.Data})
	if err == nil || wantErr == nil || err.Error() != wantErr.Error() {
		t.Errorf("body of invalid data: error %v, want %v", err, wantErr)
	}
}

// TestSharedBodiesBounds: the cache keeps the most recent events within its
// bounds of entries and bytes.
func TestSharedBodiesBounds(t *testing.T) {
	c := newSharedBodies()
	for i := range 3 * sharedBodiesMax {
		if _, err := c.body(bodyTestEvent(fmt.Sprintf("evt-%d", i), `{"n":1}`), bodyTestStored); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.entries) != sharedBodiesMax || len(c.order) != sharedBodiesMax {
		t.Errorf("%d entries (%d in order) after %d events, want the last %d", len(c.entries), len(c.order), 3*sharedBodiesMax, sharedBodiesMax)
	}
	if _, ok := c.entries[bodyKey{id: fmt.Sprintf("evt-%d", 3*sharedBodiesMax-1), stored: bodyTestStored.UnixNano()}]; !ok {
		t.Error("the most recent event was evicted")
	}

	big := `"` + strings.Repeat("x", 1<<20) + `"`
	for i := range 20 {
		if _, err := c.body(bodyTestEvent(fmt.Sprintf("big-%d", i), big), bodyTestStored); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, e := range c.entries {
		total += e.size()
	}
	if total != c.bytes || c.bytes > sharedBodiesMaxBytes {
		t.Errorf("the cache holds %d bytes (counted %d), want at most %d", total, c.bytes, sharedBodiesMaxBytes)
	}
	if _, ok := c.entries[bodyKey{id: "big-19", stored: bodyTestStored.UnixNano()}]; !ok {
		t.Error("the most recent large event was evicted")
	}
}

// BenchmarkFanOutBody encodes the bodies of one 512-byte event fanned out
// to 1,000 subscriptions, each delivery with its own copy of the stored
// message: each delivery encoding its own body (as before), and all
// sharing one.
func BenchmarkFanOutBody(b *testing.B) {
	const subscriptions = 1000
	ev := bodyTestEvent("evt-1", `{"order":"1042","total":42,"pad":"`+strings.Repeat("x", 470)+`"}`)
	copies := make([]queue.Event, subscriptions)
	for i := range copies {
		copies[i] = ev
		copies[i].Data = bytes.Clone(ev.Data)
	}
	b.Run("each", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, ev := range copies {
				if _, err := encode(ev); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("shared", func(b *testing.B) {
		c := newSharedBodies()
		b.ReportAllocs()
		stored := bodyTestStored
		for b.Loop() {
			stored = stored.Add(time.Nanosecond) // a new event each time
			for _, ev := range copies {
				if _, err := c.body(ev, stored); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
