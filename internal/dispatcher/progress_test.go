package dispatcher

import (
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/queue"
)

func TestProgressMark(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inserted []uint64
		finished []uint64
		pos      uint64
		want     mark
		pending  int
	}{
		{name: "nothing routed", pos: 7, want: mark{Floor: 7}},
		{name: "all pending", inserted: []uint64{3, 5, 9}, pos: 10, want: mark{Floor: 3}, pending: 3},
		{name: "all finished", inserted: []uint64{3, 5, 9}, finished: []uint64{5, 3, 9}, pos: 10, want: mark{Floor: 10}},
		{name: "front finished", inserted: []uint64{3, 5, 9}, finished: []uint64{3}, pos: 10, want: mark{Floor: 5}, pending: 2},
		{name: "finished out of order", inserted: []uint64{3, 5, 9, 12}, finished: []uint64{5, 12}, pos: 13,
			want: mark{Floor: 3, Done: []uint64{5, 12}}, pending: 2},
		{name: "a catch-up inserts older ones", inserted: []uint64{20, 21, 4, 6}, finished: []uint64{20}, pos: 22,
			want: mark{Floor: 4, Done: []uint64{20}}, pending: 3},
		{name: "finishing twice or what was never routed changes nothing", inserted: []uint64{3, 5}, finished: []uint64{5, 5, 4, 1}, pos: 6,
			want: mark{Floor: 3, Done: []uint64{5}}, pending: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p progress
			for _, s := range tc.inserted {
				p.insert(s)
			}
			for _, s := range tc.finished {
				p.finish(s)
			}
			got := p.mark(tc.pos)
			if got.Floor != tc.want.Floor || !slices.Equal(got.Done, tc.want.Done) {
				t.Errorf("mark = %+v, want %+v", got, tc.want)
			}
			if p.count() != tc.pending {
				t.Errorf("pending = %d, want %d", p.count(), tc.pending)
			}
		})
	}
}

func TestMarkNeeds(t *testing.T) {
	m := mark{Floor: 10, Done: []uint64{12, 15}}
	for seq, want := range map[uint64]bool{1: false, 9: false, 10: true, 11: true, 12: false, 13: true, 15: false, 16: true} {
		if got := m.needs(seq); got != want {
			t.Errorf("needs(%d) = %v, want %v", seq, got, want)
		}
	}
}

func TestMergeDone(t *testing.T) {
	got := mergeDone([]uint64{14}, mark{Floor: 5, Done: []uint64{6, 12, 14, 20}}, 10)
	if want := []uint64{12, 14, 20}; !slices.Equal(got, want) {
		t.Errorf("mergeDone = %v, want %v", got, want)
	}
}

func TestOwnerOf(t *testing.T) {
	live := map[string]bool{"a": true, "b": true, "c": true}
	counts := map[string]int{}
	moved := 0
	for i := range 3000 {
		uid := "uid-" + string(rune('a'+i%26)) + "-" + itoa(i)
		owner := ownerOf(uid, live)
		counts[owner]++
		if again := ownerOf(uid, live); again != owner {
			t.Fatalf("ownerOf(%s) is not stable: %s then %s", uid, owner, again)
		}
		// An instance leaving moves only what it owned.
		without := map[string]bool{"a": true, "b": true}
		if owner != "c" && ownerOf(uid, without) != owner {
			moved++
		}
	}
	for inst, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("instance %s owns %d of 3000 subscriptions, want about a third", inst, n)
		}
	}
	if moved != 0 {
		t.Errorf("%d subscriptions of the instances that stayed moved when one left", moved)
	}
	if got := ownerOf("x", map[string]bool{}); got != "" {
		t.Errorf("ownerOf with no live instance = %q, want none", got)
	}
}

func itoa(i int) string {
	return string([]byte{byte('0' + i/1000%10), byte('0' + i/100%10), byte('0' + i/10%10), byte('0' + i%10)})
}

func TestPurgeFloor(t *testing.T) {
	v := newProgressView(nil)
	v.readers = map[string]readerRecord{"a": {Instance: "a", Floor: 100}, "b": {Instance: "b", Floor: 80}, "dead": {Instance: "dead", Floor: 5}}
	v.lanes = map[string]laneRecord{
		"sub-1": {Owner: "a", Events: mark{Floor: 100}},
		"sub-2": {Owner: "dead", Events: mark{Floor: 40}}, // to be taken over
		"sub-3": {Owner: "", Events: mark{Floor: 60}},     // let go
		"sub-4": {Owner: "dead", Events: mark{Floor: 2}},  // deleted
		"sub-5": {Owner: "b", Events: mark{Floor: 1}},     // the live owner's reader covers it
	}
	exists := func(tok string) bool { return tok != "sub-4" }
	if got, ok := v.purgeFloor(map[string]bool{"a": true, "b": true}, exists); !ok || got != 40 {
		t.Errorf("purgeFloor = %d, %v; want 40", got, ok)
	}
	if _, ok := v.purgeFloor(map[string]bool{"a": true, "b": true, "new": true}, exists); ok {
		t.Error("purgeFloor with a live instance that has not checkpointed yet: want no answer")
	}
	if got, ok := v.purgeFloor(map[string]bool{"a": true}, func(string) bool { return false }); !ok || got != 100 {
		t.Errorf("purgeFloor of one instance = %d, %v; want its reader's 100", got, ok)
	}
}

func TestHeardRecently(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	const lease = 15 * time.Second
	for _, tc := range []struct {
		name    string
		heard   time.Time
		active  bool
		recheck time.Duration
	}{
		{name: "never heard of", heard: time.Time{}},
		{name: "just now", heard: now, active: true, recheck: lease},
		{name: "a while ago", heard: now.Add(-10 * time.Second), active: true, recheck: 5 * time.Second},
		{name: "exactly a lease ago", heard: now.Add(-lease)},
		{name: "long ago", heard: now.Add(-time.Hour)},
		{name: "the queue's clock ahead of this one's", heard: now.Add(2 * time.Second), active: true, recheck: lease + 2*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			active, recheck := heardRecently(tc.heard, now, lease)
			if active != tc.active || recheck != tc.recheck {
				t.Errorf("heardRecently = %v, %v; want %v, %v", active, recheck, tc.active, tc.recheck)
			}
		})
	}
}

// TestViewHearsInstances: an instance is heard of by its reader's
// checkpoints and by those of the lanes it claims, never by a lane it let
// go; the latest time counts.
func TestViewHearsInstances(t *testing.T) {
	v := newProgressView(slog.New(slog.DiscardHandler))
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	reader, _ := json.Marshal(readerRecord{Instance: "a", Floor: 3})
	v.apply(queue.Checkpoint{Key: readerKey("a"), Data: reader, Seq: 1, Stored: at})
	claim, _ := json.Marshal(laneRecord{UID: "u", Namespace: "ns", Name: "n", Owner: "b"})
	v.apply(queue.Checkpoint{Key: "sub-u", Data: claim, Seq: 2, Stored: at.Add(time.Second)})
	released, _ := json.Marshal(laneRecord{UID: "u", Namespace: "ns", Name: "n"})
	v.apply(queue.Checkpoint{Key: "sub-u", Data: released, Seq: 3, Stored: at.Add(2 * time.Second)})
	v.apply(queue.Checkpoint{Key: readerKey("a"), Data: reader, Seq: 4, Stored: at.Add(-time.Minute)})
	for inst, want := range map[string]time.Time{"a": at, "b": at.Add(time.Second), "": {}, "c": {}} {
		if got := v.lastHeard(inst); !got.Equal(want) {
			t.Errorf("lastHeard(%q) = %v, want %v", inst, got, want)
		}
	}
}

func TestPurgeDue(t *testing.T) {
	for _, tc := range []struct {
		name  string
		u     queue.Usage
		floor uint64
		since time.Duration
		want  bool
	}{
		{name: "nothing below the floor", u: queue.Usage{Bytes: 90, MaxBytes: 100, FirstSeq: 50}, floor: 50, since: time.Hour},
		{name: "little held, purged lately", u: queue.Usage{Bytes: 10, MaxBytes: 100, FirstSeq: 1}, floor: 40, since: time.Second},
		{name: "little held, not purged for a while", u: queue.Usage{Bytes: 10, MaxBytes: 100, FirstSeq: 1}, floor: 40, since: purgeEvery, want: true},
		{name: "a fifth of the bound held", u: queue.Usage{Bytes: 20, MaxBytes: 100, FirstSeq: 1}, floor: 40, since: time.Millisecond, want: true},
		{name: "never purged", u: queue.Usage{Bytes: 1, MaxBytes: 100, FirstSeq: 1}, floor: 2, since: time.Since(time.Time{}), want: true},
		{name: "no byte bound", u: queue.Usage{Bytes: 1 << 40, FirstSeq: 1}, floor: 2, since: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := purgeDue(tc.u, tc.floor, tc.since); got != tc.want {
				t.Errorf("purgeDue = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReliefLine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		u        queue.Usage
		position uint64
		want     uint64
	}{
		{name: "half the bound held: not crowded", u: queue.Usage{Bytes: 50, MaxBytes: 100, FirstSeq: 1}, position: 1001},
		{name: "no byte bound", u: queue.Usage{Bytes: 1 << 40, FirstSeq: 1}, position: 1001},
		{name: "crowded: the older half", u: queue.Usage{Bytes: 60, MaxBytes: 100, FirstSeq: 1}, position: 1001, want: 501},
		{name: "crowded after a purge: the older half of the rest", u: queue.Usage{Bytes: 60, MaxBytes: 100, FirstSeq: 501}, position: 1001, want: 751},
		{name: "crowded, the router at the first event", u: queue.Usage{Bytes: 60, MaxBytes: 100, FirstSeq: 7}, position: 7, want: 7},
		{name: "crowded, an empty stream's first sequence 0", u: queue.Usage{Bytes: 60, MaxBytes: 100}, position: 3, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reliefLine(tc.u, tc.position); got != tc.want {
				t.Errorf("reliefLine = %d, want %d", got, tc.want)
			}
		})
	}
}
