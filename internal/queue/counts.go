package queue

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Counts are the backlog of every subscription consumer and the dead
// letters kept for every subscription, read with one paged request each
// rather than one request per subscription.
type Counts struct {
	backlog map[string]int64  // by consumer name
	dead    map[string]uint64 // by dead-letter subject
	q       *Queue
}

// Counts reads the figures of all subscriptions. It lists every consumer of
// the events stream, which takes tens of milliseconds per thousand
// consumers, so callers read it once for all the subscriptions they report
// on (the status writer: once per tick), not once per subscription.
func (q *Queue) Counts(ctx context.Context) (*Counts, error) {
	c := &Counts{backlog: map[string]int64{}, q: q}
	events, err := q.js.Stream(ctx, q.names.EventsStream)
	if err != nil {
		return nil, fmt.Errorf("getting events stream: %w", err)
	}
	infos := events.ListConsumers(ctx)
	for info := range infos.Info() {
		c.backlog[info.Name] = int64(info.NumPending) + int64(info.NumAckPending)
	}
	if err := infos.Err(); err != nil {
		return nil, fmt.Errorf("listing consumers: %w", err)
	}
	dead, err := q.js.Stream(ctx, q.names.DeadLetterStream)
	if err != nil {
		return nil, fmt.Errorf("getting dead-letter stream: %w", err)
	}
	info, err := dead.Info(ctx, jetstream.WithSubjectFilter(q.names.DeadLetterPrefix+".>"))
	if err != nil {
		return nil, fmt.Errorf("getting dead-letter counts: %w", err)
	}
	c.dead = info.State.Subjects
	return c, nil
}

// Backlog is the number of events the consumer has still to finish:
// pending delivery plus delivered and not yet acknowledged (which includes
// those waiting for a delayed retry). It comes from JetStream, so every
// replica sees the same value.
func (c *Counts) Backlog(consumer string) int64 { return c.backlog[consumer] }

// DeadLettered is the number of dead letters kept for a subscription.
func (c *Counts) DeadLettered(subNamespace, subName string) uint64 {
	return c.dead[c.q.deadLetterSubject(subNamespace, subName)]
}
