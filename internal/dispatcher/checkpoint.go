package dispatcher

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/queue"
)

// readerRecord is an instance's checkpoint: the lowest events-stream
// sequence any of its lanes still needs.
type readerRecord struct {
	Instance string    `json:"instance"`
	Floor    uint64    `json:"floor"`
	Time     time.Time `json:"time"`
}

const readerKeyPrefix = "reader-"

func readerKey(instance string) string {
	return readerKeyPrefix + strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(instance), "-"), "-")
}

// checkpointer stores the progress of this instance's lanes and its
// reader's floor, in one atomic batch per interval, so that a crash
// redelivers at most what was finished since the last one.
type checkpointer struct {
	q        *queue.Queue
	router   *router
	instance string
	interval time.Duration
	clock    clock.WithTicker
	log      *slog.Logger

	mu    sync.Mutex
	lanes map[string]*lane
	// releasing lanes get one last checkpoint naming no owner, then are
	// forgotten; dropped ones have their checkpoint and backlog deleted.
	releasing map[string]*lane
	dropped   map[string]bool
	// purged is the backlog floor each lane was last purged below, and
	// when.
	purged map[string]purgeMark
}

type purgeMark struct {
	below uint64
	at    time.Time
}

// backlogPurgeEvery bounds how often one lane's backlog is purged: a
// purge is one sync.
const backlogPurgeEvery = 5 * time.Second

func newCheckpointer(q *queue.Queue, r *router, instance string, interval time.Duration, clk clock.WithTicker, log *slog.Logger) *checkpointer {
	return &checkpointer{q: q, router: r, instance: instance, interval: interval, clock: clk, log: log,
		lanes: map[string]*lane{}, releasing: map[string]*lane{}, dropped: map[string]bool{}, purged: map[string]purgeMark{}}
}

func (c *checkpointer) add(l *lane) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lanes[l.token] = l
	delete(c.releasing, l.token)
	delete(c.dropped, l.token)
}

// release makes the next checkpoint of l its last, naming no owner, so
// that the instance the subscription moved to takes it over.
func (c *checkpointer) release(l *lane) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lanes[l.token] == l {
		delete(c.lanes, l.token)
	}
	c.releasing[l.token] = l
}

// forget stops checkpointing a lane whose checkpoint another instance
// claimed.
func (c *checkpointer) forget(l *lane) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lanes[l.token] == l {
		delete(c.lanes, l.token)
	}
	if c.releasing[l.token] == l {
		delete(c.releasing, l.token)
	}
}

// drop deletes the checkpoint and backlog of a lane whose subscription is
// gone.
func (c *checkpointer) drop(l *lane) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lanes[l.token] == l {
		delete(c.lanes, l.token)
	}
	delete(c.releasing, l.token)
	c.dropped[l.token] = true
}

// run checkpoints every interval until ctx ends.
func (c *checkpointer) run(ctx context.Context) {
	onTicks(ctx, c.clock, c.interval, func() { c.save(ctx) })
}

// save stores what changed since the last checkpoint. It reports whether
// it stored everything.
func (c *checkpointer) save(ctx context.Context) bool {
	// The position is read before the lanes: an event routed meanwhile is
	// then pending in its lane, or at or above the position.
	pos := c.router.position()
	if pos == 0 {
		return false
	}
	c.mu.Lock()
	var cps []queue.Checkpoint
	floor := pos
	for tok, l := range c.lanes {
		floor = min(floor, l.floor(pos))
		if !l.isDirty() {
			continue
		}
		rec := l.record(c.instance, pos)
		cps = append(cps, encodeRecord(tok, rec))
	}
	releasing := make([]*lane, 0, len(c.releasing))
	for tok, l := range c.releasing {
		if l.busy() {
			// Its last deliveries and moves finish first, so that the
			// instance taking over does not make them again.
			continue
		}
		cps = append(cps, encodeRecord(tok, l.record("", pos)))
		releasing = append(releasing, l)
	}
	dropped := make([]string, 0, len(c.dropped))
	for tok := range c.dropped {
		dropped = append(dropped, tok)
	}
	c.mu.Unlock()
	data, _ := json.Marshal(readerRecord{Instance: c.instance, Floor: floor, Time: c.clock.Now().UTC()})
	cps = append(cps, queue.Checkpoint{Key: readerKey(c.instance), Data: data})

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.q.SaveProgress(sctx, cps); err != nil {
		c.log.Warn("Storing the delivery checkpoint failed; it is tried again at the next interval", "records", len(cps), "err", err)
		return false
	}
	c.mu.Lock()
	for _, l := range releasing {
		if c.releasing[l.token] == l {
			delete(c.releasing, l.token)
		}
	}
	c.mu.Unlock()
	for _, tok := range dropped {
		err := c.q.DeleteProgress(sctx, tok)
		if err == nil {
			err = c.q.PurgeBacklog(sctx, tok, 0)
		}
		if err != nil {
			c.log.Warn("Deleting the checkpoint and backlog of a deleted subscription failed; tried again", "token", tok, "err", err)
			continue
		}
		c.mu.Lock()
		delete(c.dropped, tok)
		delete(c.purged, tok)
		c.mu.Unlock()
	}
	c.purgeBacklogs(sctx, cps)
	return true
}

// purgeBacklogs removes from the backlog stream what the checkpoints just
// stored record as finished: only a durable floor may be purged below.
func (c *checkpointer) purgeBacklogs(ctx context.Context, cps []queue.Checkpoint) {
	now := c.clock.Now()
	for _, cp := range cps {
		if !strings.HasPrefix(cp.Key, queue.SubscriptionTokenPrefix) {
			continue
		}
		var rec laneRecord
		if json.Unmarshal(cp.Data, &rec) != nil {
			continue
		}
		c.mu.Lock()
		last := c.purged[cp.Key]
		c.mu.Unlock()
		if rec.Backlog.Floor <= max(last.below, 1) || now.Sub(last.at) < backlogPurgeEvery {
			continue
		}
		if err := c.q.PurgeBacklog(ctx, cp.Key, rec.Backlog.Floor); err != nil {
			c.log.Warn("Purging a subscription's finished backlog failed", "token", cp.Key, "err", err)
			continue
		}
		c.mu.Lock()
		c.purged[cp.Key] = purgeMark{below: rec.Backlog.Floor, at: now}
		c.mu.Unlock()
	}
}

func encodeRecord(token string, rec laneRecord) queue.Checkpoint {
	// A record holds only numbers, strings and times JSON encodes.
	data, _ := json.Marshal(rec)
	return queue.Checkpoint{Key: token, Data: data}
}
