package dispatcher

import (
	"bytes"
	"sync"
	"time"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
)

// Bounds of the bodies shared among an event's deliveries. An event fanned
// out to many subscriptions is delivered to all of them within moments,
// so a few hundred recent events cover it; the byte bound keeps large
// events from holding much memory.
const (
	sharedBodiesMax      = 512
	sharedBodiesMaxBytes = 8 << 20
)

// sharedBodies encodes the delivered body of each event once for all the
// subscriptions it goes to (and all its attempts): the body depends on the
// event alone, only the signatures and headers differ per subscription.
// It is safe for concurrent use.
type sharedBodies struct {
	mu      sync.Mutex
	entries map[bodyKey]*sharedBody
	// order lists the keys in the order they came, oldest first, for
	// eviction. Appending past its capacity copies only the live part.
	order []bodyKey
	bytes int
}

// bodyKey names one stored event: every consumer gets the same stream
// message, with the same id and the same time of storage, however many
// times it is delivered.
type bodyKey struct {
	id     string
	stored int64
}

type sharedBody struct {
	ev   queue.Event
	once sync.Once
	body []byte
	err  error
}

// size is what an entry holds on to: the event's data (a slice of the
// message it came in) and its body.
func (b *sharedBody) size() int { return 2*len(b.ev.Data) + len(b.ev.Type) + 64 }

func newSharedBodies() *sharedBodies {
	return &sharedBodies{entries: make(map[bodyKey]*sharedBody)}
}

// body returns delivery.Body of the event stored at stored.
func (c *sharedBodies) body(ev queue.Event, stored time.Time) ([]byte, error) {
	k := bodyKey{id: ev.ID, stored: stored.UnixNano()}
	c.mu.Lock()
	e := c.entries[k]
	if e == nil {
		e = &sharedBody{ev: ev}
		c.add(k, e)
	}
	c.mu.Unlock()
	if !sameEvent(e.ev, ev) {
		// Not the event cached under its key: never shared.
		return encode(ev)
	}
	e.once.Do(func() { e.body, e.err = encode(ev) })
	return e.body, e.err
}

// add caches e under k, evicting the oldest entries past the bounds.
// Called with c.mu held.
func (c *sharedBodies) add(k bodyKey, e *sharedBody) {
	c.entries[k] = e
	c.order = append(c.order, k)
	c.bytes += e.size()
	for len(c.order) > sharedBodiesMax || (c.bytes > sharedBodiesMaxBytes && len(c.order) > 1) {
		old := c.order[0]
		c.order = c.order[1:]
		c.bytes -= c.entries[old].size()
		delete(c.entries, old)
	}
}

func sameEvent(a, b queue.Event) bool {
	return a.ID == b.ID && a.Type == b.Type && a.Time.Equal(b.Time) && bytes.Equal(a.Data, b.Data)
}

func encode(ev queue.Event) ([]byte, error) {
	return delivery.Body(delivery.Message{ID: ev.ID, Type: ev.Type, Time: ev.Time, Data: ev.Data})
}
