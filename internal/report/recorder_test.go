package report

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func decode(t *testing.T, data []byte) payload {
	t.Helper()
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	return p
}

func TestRecorderFlush(t *testing.T) {
	r := NewRecorder("dispatcher-0")
	if got := r.Flush(); got != nil {
		t.Fatalf("Flush() before anything = %s, want nil", got)
	}
	billing := Key{Namespace: "team", Name: "billing", UID: "u1"}
	audit := Key{Namespace: "team", Name: "audit", UID: "u2"}
	r.Record(billing, Outcome{Time: t0, StatusCode: 503, Class: "HTTPStatus", Message: "unavailable"})
	r.Record(billing, Outcome{Time: t1, Success: true, StatusCode: 200})
	r.Record(billing, Outcome{Time: t2, StatusCode: 500, Class: "HTTPStatus"})
	r.Record(billing, Outcome{Time: t2.Add(time.Second), Class: "Timeout", DeadLettered: true, Message: strings.Repeat("x", 1000)})
	r.Record(audit, Outcome{Time: t0, Class: "ConnectionError"})
	r.FilterError(audit, "no such key: total")

	got := decode(t, r.Flush())
	if !strings.HasPrefix(got.ID, "dispatcher-0/") || got.Replica != "dispatcher-0" {
		t.Errorf("id %q, replica %q: want both naming dispatcher-0", got.ID, got.Replica)
	}
	want := []Delta{
		{
			Namespace: "team", Name: "audit", UID: "u2",
			Failed: 1, LastAttempt: t0, ConsecutiveFailures: 1, FailingSince: t0,
			LastFailure:  &Failure{Time: t0, Class: "ConnectionError"},
			FilterErrors: 1, LastFilterError: "no such key: total",
		},
		{
			Namespace: "team", Name: "billing", UID: "u1",
			Delivered: 1, Failed: 3, DeadLettered: 1,
			LastAttempt: t2.Add(time.Second), LastSuccess: t1,
			LastFailure:         &Failure{Time: t2.Add(time.Second), Class: "Timeout", Message: strings.Repeat("x", maxMessage)},
			ConsecutiveFailures: 2, Succeeded: true, FailingSince: t2,
		},
	}
	if !reflect.DeepEqual(got.Subscriptions, want) {
		t.Errorf("deltas =\n%+v\nwant\n%+v", got.Subscriptions, want)
	}

	if got := r.Flush(); got != nil {
		t.Errorf("second Flush() = %s, want nil: the first drained everything", got)
	}
	r.Record(audit, Outcome{Time: t2, Success: true})
	next := decode(t, r.Flush())
	if next.ID == got.ID {
		t.Errorf("two flushes share the id %q", next.ID)
	}
	if want := []Delta{{Namespace: "team", Name: "audit", UID: "u2", Delivered: 1, LastAttempt: t2, LastSuccess: t2, Succeeded: true}}; !reflect.DeepEqual(next.Subscriptions, want) {
		t.Errorf("deltas after the drain = %+v, want %+v", next.Subscriptions, want)
	}
}

func TestRecorderIncarnations(t *testing.T) {
	// A restarted replica starts its sequence again; its ids must still
	// differ from those of the process before.
	k := Key{Namespace: "a", Name: "b"}
	first, second := NewRecorder("r"), NewRecorder("r")
	first.Record(k, Outcome{Time: t0, Success: true})
	second.Record(k, Outcome{Time: t0, Success: true})
	if a, b := decode(t, first.Flush()).ID, decode(t, second.Flush()).ID; a == b {
		t.Errorf("two processes of one replica produced the same id %q", a)
	}
}

func TestRecorderConcurrent(t *testing.T) {
	r := NewRecorder("r")
	keys := []Key{{Namespace: "a", Name: "1"}, {Namespace: "a", Name: "2"}, {Namespace: "b", Name: "1"}}
	const perWorker = 500
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		flushed []payload
		stop    = make(chan struct{})
		flusher sync.WaitGroup
	)
	flusher.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if data := r.Flush(); data != nil {
				mu.Lock()
				flushed = append(flushed, decode(t, data))
				mu.Unlock()
			}
		}
	})
	for i := range 8 {
		wg.Go(func() {
			for j := range perWorker {
				k := keys[(i+j)%len(keys)]
				r.Record(k, Outcome{Time: t0.Add(time.Duration(j) * time.Millisecond), Success: j%3 != 0})
			}
		})
	}
	wg.Wait()
	close(stop)
	flusher.Wait()
	if data := r.Flush(); data != nil {
		flushed = append(flushed, decode(t, data))
	}
	var delivered, failed int64
	for _, p := range flushed {
		for _, d := range p.Subscriptions {
			delivered += d.Delivered
			failed += d.Failed
		}
	}
	total := int64(8 * perWorker)
	wantFailed := int64(8 * ((perWorker + 2) / 3))
	if delivered+failed != total || failed != wantFailed {
		t.Errorf("flushed %d delivered and %d failed, want %d and %d: outcomes lost or counted twice",
			delivered, failed, total-wantFailed, wantFailed)
	}
}

func TestRecorderForgetsIdleKeys(t *testing.T) {
	r := NewRecorder("r")
	k := Key{Namespace: "a", Name: "b"}
	r.Record(k, Outcome{Time: t0, Success: true})
	r.Flush()
	for range idleFlushes {
		r.Flush()
	}
	r.mu.RLock()
	n := len(r.entries)
	r.mu.RUnlock()
	if n != 0 {
		t.Fatalf("%d entries after %d idle flushes, want 0", n, idleFlushes)
	}
	// A key forgotten comes back when used again.
	r.Record(k, Outcome{Time: t1, Success: true})
	if got := decode(t, r.Flush()).Subscriptions; len(got) != 1 || got[0].Delivered != 1 {
		t.Errorf("deltas after forgetting = %+v, want one delivery", got)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	r := NewRecorder("r")
	k := Key{Namespace: "team", Name: "billing", UID: "u1"}
	success := Outcome{Time: t0, Success: true, StatusCode: 200}
	failure := Outcome{Time: t1, StatusCode: 503, Class: "HTTPStatus", Message: "unavailable"}
	r.Record(k, success)
	if n := testing.AllocsPerRun(100, func() {
		r.Record(k, success)
		r.Record(k, failure)
	}); n != 0 {
		t.Errorf("Record allocates %.1f times per call pair for a known key, want 0", n)
	}
}
