package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PublishStats stores one stats message for the status writer.
func (q *Queue) PublishStats(ctx context.Context, payload []byte) error {
	if _, err := q.js.Publish(ctx, q.names.StatsSubject, payload); err != nil {
		return fmt.Errorf("publishing stats: %w", err)
	}
	return nil
}

// StatsMessage is one pending stats message.
type StatsMessage struct {
	Data []byte
	msg  jetstream.Msg
}

// Ack removes the message from the stats stream once the caller applied it.
func (s *StatsMessage) Ack() error {
	if err := s.msg.Ack(); err != nil {
		return fmt.Errorf("acknowledging stats message: %w", err)
	}
	return nil
}

// FetchStats returns up to max pending stats messages: those pending now, or
// if there are none, those arriving within wait. The caller acks each after applying it; unacked
// messages come back after the consumer's ack wait (30 s).
func (q *Queue) FetchStats(ctx context.Context, max int, wait time.Duration) ([]*StatsMessage, error) {
	if max < 1 {
		return nil, fmt.Errorf("fetching stats: max must be positive, got %d", max)
	}
	q.statsMu.Lock()
	cons := q.statsConsumer
	q.statsMu.Unlock()
	// What is already pending is returned at once; only an empty stream
	// makes the call wait.
	out, err := drainStats(ctx, cons, max, 0)
	if err != nil || len(out) > 0 || wait <= 0 {
		return out, err
	}
	return drainStats(ctx, cons, max, wait)
}

func drainStats(ctx context.Context, cons jetstream.Consumer, max int, wait time.Duration) ([]*StatsMessage, error) {
	var batch jetstream.MessageBatch
	var err error
	if wait <= 0 {
		batch, err = cons.FetchNoWait(max)
	} else {
		fctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		batch, err = cons.Fetch(max, jetstream.FetchContext(fctx))
	}
	if err != nil {
		return nil, fmt.Errorf("fetching stats: %w", err)
	}
	var out []*StatsMessage
	for m := range batch.Messages() {
		out = append(out, &StatsMessage{Data: m.Data(), msg: m})
	}
	if err := batch.Error(); err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return nil, fmt.Errorf("fetching stats: %w", err)
	}
	return out, nil
}
