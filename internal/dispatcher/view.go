package dispatcher

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/hookline/hookline/internal/queue"
)

// progressView holds the latest checkpoint of every lane and every
// instance's reader, as the progress stream has them: what an instance
// taking a subscription over resumes from, what the status writer reports,
// and what the events stream may be purged below.
type progressView struct {
	log *slog.Logger

	mu      sync.RWMutex
	lanes   map[string]laneRecord   // by subscription token
	seqs    map[string]uint64       // where each was stored
	readers map[string]readerRecord // by instance
	// heard is when each instance last stored a checkpoint: its reader's,
	// or one of a lane it claims.
	heard  map[string]time.Time
	loaded chan struct{}

	// changed is told of every lane checkpoint that arrives.
	changed func(token string, rec laneRecord)
}

func newProgressView(log *slog.Logger) *progressView {
	return &progressView{log: log, lanes: map[string]laneRecord{}, seqs: map[string]uint64{}, readers: map[string]readerRecord{}, heard: map[string]time.Time{}, loaded: make(chan struct{})}
}

// run keeps the view up to date until ctx ends.
func (v *progressView) run(ctx context.Context, q *queue.Queue) error {
	var once sync.Once
	return q.WatchProgress(ctx, v.apply, func() { once.Do(func() { close(v.loaded) }) })
}

func (v *progressView) apply(cp queue.Checkpoint) {
	if strings.HasPrefix(cp.Key, readerKeyPrefix) {
		var r readerRecord
		if err := json.Unmarshal(cp.Data, &r); err != nil {
			v.log.Warn("Skipping an unreadable reader checkpoint", "key", cp.Key, "err", err)
			return
		}
		v.mu.Lock()
		v.readers[r.Instance] = r
		v.hear(r.Instance, cp.Stored)
		v.mu.Unlock()
		return
	}
	var rec laneRecord
	if len(cp.Data) == 0 {
		return
	}
	if err := json.Unmarshal(cp.Data, &rec); err != nil {
		v.log.Warn("Skipping an unreadable subscription checkpoint", "key", cp.Key, "err", err)
		return
	}
	v.mu.Lock()
	if cp.Seq < v.seqs[cp.Key] {
		// Older than what a claim already put here.
		v.mu.Unlock()
		return
	}
	v.lanes[cp.Key] = rec
	v.seqs[cp.Key] = cp.Seq
	v.hear(rec.Owner, cp.Stored)
	v.mu.Unlock()
	if v.changed != nil {
		v.changed(cp.Key, rec)
	}
}

// hear records that instance stored a checkpoint at t. Called with v.mu
// held.
func (v *progressView) hear(instance string, t time.Time) {
	if instance != "" && t.After(v.heard[instance]) {
		v.heard[instance] = t
	}
}

// lastHeard is when instance last stored a checkpoint, by the queue's
// clock; zero if never seen.
func (v *progressView) lastHeard(instance string) time.Time {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.heard[instance]
}

// lane returns the latest checkpoint of a lane.
func (v *progressView) lane(token string) (laneRecord, bool) {
	r, _, ok := v.laneAt(token)
	return r, ok
}

// laneAt returns the latest checkpoint of a lane and where it was stored.
func (v *progressView) laneAt(token string) (laneRecord, uint64, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	r, ok := v.lanes[token]
	return r, v.seqs[token], ok
}

// snapshot copies the latest checkpoint of every lane.
func (v *progressView) snapshot() map[string]laneRecord {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return maps.Clone(v.lanes)
}

// claimed records a checkpoint this instance stored by a claim.
func (v *progressView) claimed(token string, rec laneRecord, seq uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if seq >= v.seqs[token] {
		v.lanes[token], v.seqs[token] = rec, seq
	}
}

// forget drops a lane whose checkpoint was deleted.
func (v *progressView) forget(token string) {
	v.mu.Lock()
	delete(v.lanes, token)
	delete(v.seqs, token)
	v.mu.Unlock()
}

// tokens lists the lanes with a checkpoint.
func (v *progressView) tokens() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]string, 0, len(v.lanes))
	for t := range v.lanes {
		out = append(out, t)
	}
	return out
}

// purgeFloor is the lowest events-stream sequence still needed: by the
// reader of each live instance, and by each lane whose owner is not live
// (to be taken over), among the lanes exists says still exist. It reports
// false when it cannot tell: a live instance has not checkpointed yet.
func (v *progressView) purgeFloor(live map[string]bool, exists func(token string) bool) (uint64, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	floor := ^uint64(0)
	for inst := range live {
		r, ok := v.readers[inst]
		if !ok {
			return 0, false
		}
		floor = min(floor, r.Floor)
	}
	for tok, rec := range v.lanes {
		if live[rec.Owner] || !exists(tok) {
			continue
		}
		floor = min(floor, rec.Events.Floor)
	}
	if floor == ^uint64(0) {
		return 0, false
	}
	return floor, true
}

// reader returns the latest checkpoint of an instance's reader.
func (v *progressView) reader(instance string) (readerRecord, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	r, ok := v.readers[instance]
	return r, ok
}
