package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestReadDeliversInOrder(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	token := SubscriptionToken("uid-1")
	var want []Event
	for i := range 5 {
		want = append(want, ev("shop", fmt.Sprint(i), "order.created"))
	}
	mustPublish(t, q, want...)
	for i := 5; i < 7; i++ {
		e := ev("shop", fmt.Sprint(i), "invoice.sent")
		if _, err := q.PublishDirect(ctxT(t), token, e, ""); err != nil {
			t.Fatalf("PublishDirect: %v", err)
		}
		want = append(want, e)
	}
	for i := 7; i < 10; i++ {
		e := ev("other", fmt.Sprint(i), "a")
		mustPublish(t, q, e)
		want = append(want, e)
	}

	for _, from := range []uint64{0, 1} {
		got := readN(t, q, from, 10)
		if !slices.Equal(seqs(got), seqRange(1, 10)) {
			t.Fatalf("Read from %d: sequences %v, want 1 to 10", from, seqs(got))
		}
		for i, s := range got {
			if !sameEvent(s.Event, want[i]) {
				t.Errorf("Read from %d: event %d = %+v, want %+v", from, i, s.Event, want[i])
			}
			wantDirect := ""
			if i == 5 || i == 6 {
				wantDirect = token
			}
			if s.Direct != wantDirect {
				t.Errorf("Read from %d: event %d Direct = %q, want %q", from, i, s.Direct, wantDirect)
			}
			if s.Stored.IsZero() || s.Attempts != 0 || !s.NotBefore.IsZero() {
				t.Errorf("Read from %d: event %d Stored %s, Attempts %d, NotBefore %s; want a store time and no backlog fields",
					from, i, s.Stored, s.Attempts, s.NotBefore)
			}
		}
		for i := 1; i < len(got); i++ {
			if got[i].Stored.Before(got[i-1].Stored) {
				t.Errorf("event %d stored at %s, before event %d at %s", i, got[i].Stored, i-1, got[i-1].Stored)
			}
		}
	}
	// From the middle.
	got := readN(t, q, 6, 5)
	if !slices.Equal(seqs(got), seqRange(6, 10)) || got[0].Event.ID != "5" || got[0].Direct != token {
		t.Errorf("Read from 6: sequences %v, first %+v; want 6 to 10 starting with direct event 5", seqs(got), got[0])
	}
	// Reading removes nothing: the stream has limits retention.
	if n := messages(t, q); n != 10 {
		t.Errorf("stream holds %d messages after reading, want 10", n)
	}

	// A reader at the end follows new events.
	done := make(chan []Stored, 1)
	go func() {
		var got []Stored
		err := q.Read(ctxT(t), 11, func(s Stored) error {
			got = append(got, s)
			if len(got) == 2 {
				return errEnough
			}
			return nil
		})
		if !errors.Is(err, errEnough) {
			t.Errorf("Read from the end: %v", err)
		}
		done <- got
	}()
	mustPublish(t, q, ev("shop", "10", "a"))
	mustPublish(t, q, ev("shop", "11", "a"))
	if got := <-done; !slices.Equal(seqs(got), []uint64{11, 12}) || got[0].Event.ID != "10" || got[1].Event.ID != "11" {
		t.Errorf("Read from the end got %+v, want events 10 and 11 at 11 and 12", got)
	}
}

func TestReadSkipsForeignMessages(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	mustPublish(t, q, ev("shop", "1", "a"))
	// Not stored by this package: no event headers.
	if _, err := q.js.Publish(ctxT(t), q.names.EventsPrefix+".shop.a", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, q, ev("shop", "3", "a"))
	got := readN(t, q, 1, 2)
	if !slices.Equal(seqs(got), []uint64{1, 3}) || got[0].Event.ID != "1" || got[1].Event.ID != "3" {
		t.Errorf("Read = %+v, want events 1 and 3 at sequences 1 and 3", got)
	}
}

func TestReadStops(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	mustPublish(t, q, ev("shop", "1", "a"), ev("shop", "2", "a"))
	// A handler's error ends Read and is returned as is.
	calls := 0
	boom := errors.New("boom")
	if err := q.Read(ctxT(t), 1, func(Stored) error { calls++; return boom }); err != boom {
		t.Errorf("Read with a failing handler = %v, want the handler's error", err)
	}
	if calls != 1 {
		t.Errorf("handler called %d times after failing, want 1", calls)
	}
	// The end of the context ends Read without an error.
	ctx, cancel := context.WithCancel(ctxT(t))
	err := q.Read(ctx, 1, func(s Stored) error {
		if s.Seq == 2 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Errorf("Read whose context ended = %v, want nil", err)
	}
}

func TestPurgeEvents(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), func(c *Config) { c.MaxBytes = 8 << 20 })
	var batch []Event
	for i := 1; i <= 10; i++ {
		batch = append(batch, ev("shop", fmt.Sprint(i), "a"))
	}
	mustPublish(t, q, batch...)
	bounds := func() (uint64, uint64) {
		t.Helper()
		first, last, err := q.EventsBounds(ctxT(t))
		if err != nil {
			t.Fatalf("EventsBounds: %v", err)
		}
		return first, last
	}
	usage := func() Usage {
		t.Helper()
		u, err := q.Usage(ctxT(t))
		if err != nil {
			t.Fatalf("Usage: %v", err)
		}
		return u
	}
	if first, last := bounds(); first != 1 || last != 10 {
		t.Fatalf("EventsBounds = %d, %d; want 1, 10", first, last)
	}
	before := usage()
	if before.Messages != 10 || before.Bytes == 0 || before.MaxBytes != 8<<20 {
		t.Fatalf("Usage = %+v, want 10 messages, some bytes, max 8 MiB", before)
	}

	if err := q.PurgeEvents(ctxT(t), 4); err != nil {
		t.Fatalf("PurgeEvents(4): %v", err)
	}
	if first, last := bounds(); first != 4 || last != 10 {
		t.Errorf("EventsBounds after purging below 4 = %d, %d; want 4, 10", first, last)
	}
	after := usage()
	if after.Messages != 7 || after.Bytes >= before.Bytes || after.Bytes == 0 {
		t.Errorf("Usage after purging below 4 = %+v, want 7 messages and fewer bytes than %d", after, before.Bytes)
	}
	// A reader from below the purge starts at the first event kept.
	got := readN(t, q, 1, 7)
	if !slices.Equal(seqs(got), seqRange(4, 10)) || got[0].Event.ID != "4" {
		t.Errorf("Read from 1 after the purge: sequences %v, first %+v; want 4 to 10", seqs(got), got[0].Event)
	}

	// Below what is already gone, and below 2, nothing happens.
	for _, below := range []uint64{0, 1, 2, 4} {
		if err := q.PurgeEvents(ctxT(t), below); err != nil {
			t.Errorf("PurgeEvents(%d): %v", below, err)
		}
		if n := messages(t, q); n != 7 {
			t.Errorf("after PurgeEvents(%d) the stream holds %d messages, want 7", below, n)
		}
	}

	// Everything delivered: the stream is empty and goes on where it was.
	if err := q.PurgeEvents(ctxT(t), 11); err != nil {
		t.Fatalf("PurgeEvents(11): %v", err)
	}
	if first, last := bounds(); first != 11 || last != 10 {
		t.Errorf("EventsBounds of the emptied stream = %d, %d; want 11, 10", first, last)
	}
	if u := usage(); u.Messages != 0 || u.Bytes != 0 {
		t.Errorf("Usage of the emptied stream = %+v", u)
	}
	mustPublish(t, q, ev("shop", "11", "a"))
	if got := readN(t, q, 1, 1); got[0].Seq != 11 || got[0].Event.ID != "11" {
		t.Errorf("first event after emptying = %+v, want event 11 at sequence 11", got[0])
	}
}

// TestEventsBoundsOfNewStream: EventsBounds documents that an empty stream
// has first = last+1, which callers computing "nothing to read" rely on.
func TestEventsBoundsOfNewStream(t *testing.T) {
	q := openEmbedded(t, t.TempDir(), nil)
	first, last, err := q.EventsBounds(ctxT(t))
	if err != nil {
		t.Fatalf("EventsBounds: %v", err)
	}
	if first != last+1 {
		t.Errorf("EventsBounds of a new stream = %d, %d; want first = last+1", first, last)
	}
}
