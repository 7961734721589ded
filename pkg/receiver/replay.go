package receiver

import (
	"container/heap"
	"sync"
	"time"
)

// claim is the outcome of asking to process a webhook-id.
type claim int

const (
	// claimed: the ID is new; the caller processes it and then calls
	// finish.
	claimed claim = iota
	// claimDone: the ID was processed successfully within its window.
	claimDone
	// claimInProgress: another request with the ID is being processed.
	claimInProgress
	// claimFull: the cache holds its maximum of live IDs.
	claimFull
)

// replayCache remembers webhook-ids: while a request with the ID is being
// handled, and after it succeeded until the ID's expiry. Memory is bounded
// by max; expired IDs are dropped on every claim.
type replayCache struct {
	max int

	mu      sync.Mutex
	entries map[string]*replayEntry
	expiry  expiryHeap // finished entries only, soonest expiry first
}

type replayEntry struct {
	id      string
	done    bool
	expires time.Time
}

func newReplayCache(maxEntries int) *replayCache {
	return &replayCache{max: maxEntries, entries: make(map[string]*replayEntry)}
}

// claim marks id as being processed unless it is known.
func (c *replayCache) claim(id string, now time.Time) claim {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.expiry) > 0 && !c.expiry[0].expires.After(now) {
		e := heap.Pop(&c.expiry).(*replayEntry)
		delete(c.entries, e.id)
	}
	if e, ok := c.entries[id]; ok {
		if e.done {
			return claimDone
		}
		return claimInProgress
	}
	if len(c.entries) >= c.max {
		return claimFull
	}
	c.entries[id] = &replayEntry{id: id}
	return claimed
}

// finish ends the processing of a claimed id: a success is remembered
// until expires, a failure forgotten so that the sender's retry is
// processed.
func (c *replayCache) finish(id string, success bool, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || e.done {
		return
	}
	if !success {
		delete(c.entries, id)
		return
	}
	e.done = true
	e.expires = expires
	heap.Push(&c.expiry, e)
}

// len returns the number of IDs held.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

type expiryHeap []*replayEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }

func (h *expiryHeap) Push(x any) {
	*h = append(*h, x.(*replayEntry))
}

func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
