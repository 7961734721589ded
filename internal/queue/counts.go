package queue

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetterCounts are the dead letters kept for every subscription, read
// with one request rather than one per subscription.
type DeadLetterCounts struct {
	dead map[string]uint64 // by dead-letter subject
	q    *Queue
}

// DeadLetterCounts reads how many dead letters the store keeps for each
// subscription.
func (q *Queue) DeadLetterCounts(ctx context.Context) (*DeadLetterCounts, error) {
	dead, err := q.js.Stream(ctx, q.names.DeadLetterStream)
	if err != nil {
		return nil, fmt.Errorf("getting dead-letter stream: %w", err)
	}
	info, err := dead.Info(ctx, jetstream.WithSubjectFilter(q.names.DeadLetterPrefix+".>"))
	if err != nil {
		return nil, fmt.Errorf("getting dead-letter counts: %w", err)
	}
	return &DeadLetterCounts{dead: info.State.Subjects, q: q}, nil
}

// Kept is the number of dead letters kept for a subscription.
func (c *DeadLetterCounts) Kept(subNamespace, subName string) uint64 {
	if c == nil {
		return 0
	}
	return c.dead[c.q.deadLetterSubject(subNamespace, subName)]
}
