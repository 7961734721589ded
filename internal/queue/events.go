package queue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Stored is one event as read from the events stream or the backlog
// stream.
type Stored struct {
	// Seq is the event's sequence in the stream it was read from.
	Seq   uint64
	Event Event
	// Stored is when the events stream first stored the event.
	Stored time.Time
	// Direct is the token of the subscription the event is addressed to
	// alone (a replayed dead letter), "" for an event routed by type.
	Direct string
	// Attempts made before the event was moved (backlog only).
	Attempts int
	// NotBefore is when a moved event may be delivered (backlog only).
	NotBefore time.Time
	// Pending is how many messages the reader had still to read after
	// this one when it was handed over.
	Pending uint64
}

// readBatch is how many events one pull of a reader asks for.
const readBatch = 1000

// Read reads the events stream in order from sequence from (1 or less: the
// first event stored) and calls handle for each event, until ctx ends or
// handle returns an error, which Read returns. It holds no durable state
// on the server: an ordered consumer in memory, recreated after a lost
// connection at the sequence where it stopped. A message that is not an
// event this package stored is skipped (handle never sees it).
func (q *Queue) Read(ctx context.Context, from uint64, handle func(Stored) error) error {
	return q.read(ctx, q.names.EventsStream, nil, from, handle)
}

// ReadFor reads, as Read does, only the events of one namespace and those
// addressed to one subscription alone: what a subscription that fell
// behind its dispatcher's reader reads itself.
func (q *Queue) ReadFor(ctx context.Context, namespace, token string, from uint64, handle func(Stored) error) error {
	return q.read(ctx, q.names.EventsStream, []string{q.names.EventsPrefix + "." + namespace + ".>", q.directSubject(token)}, from, handle)
}

func (q *Queue) read(ctx context.Context, stream string, filter []string, from uint64, handle func(Stored) error) error {
	next := max(from, 1)
	// After a failed read the stream is read on from where it stopped,
	// after a pause that doubles from 100ms up to 5s.
	backoff := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Cap: 5 * time.Second, Steps: math.MaxInt32}
	var retryIn time.Duration
	var out error
	_ = wait.DelayFunc(func() time.Duration { return retryIn }).Until(ctx, true, true, func(ctx context.Context) (bool, error) {
		err := q.readOnce(ctx, stream, filter, &next, handle)
		var hErr handlerError
		switch {
		case ctx.Err() != nil:
			return true, nil
		case errors.As(err, &hErr):
			out = hErr.err
			return true, nil
		case errors.Is(err, nats.ErrConnectionClosed):
			out = fmt.Errorf("reading stream %s: %w", stream, err)
			return true, nil
		case err != nil:
			retryIn = backoff.Step()
			q.log.Warn("Reading a stream failed, reading on", "stream", stream, "sequence", next, "error", err, "retryIn", retryIn)
		}
		return false, nil
	})
	return out
}

type handlerError struct{ err error }

func (h handlerError) Error() string { return h.err.Error() }

func (q *Queue) readOnce(ctx context.Context, stream string, filter []string, next *uint64, handle func(Stored) error) error {
	cons, err := q.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    filter,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       *next,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("creating a reader at sequence %d: %w", *next, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(readBatch))
	if err != nil {
		return fmt.Errorf("starting a reader at sequence %d: %w", *next, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		jm, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		md, err := jm.Metadata()
		if err != nil {
			return fmt.Errorf("reading message metadata: %w", err)
		}
		*next = md.Sequence.Stream + 1
		st, err := q.stored(jm.Subject(), jm.Headers(), jm.Data(), md.Sequence.Stream, md.Timestamp)
		if err != nil {
			q.log.Error("Skipping a malformed message", "stream", stream, "sequence", md.Sequence.Stream, "error", err)
			continue
		}
		st.Pending = md.NumPending
		if err := handle(st); err != nil {
			return handlerError{err}
		}
	}
}

// stored decodes one message of the events or backlog stream.
func (q *Queue) stored(subject string, h nats.Header, data []byte, seq uint64, ts time.Time) (Stored, error) {
	ev, err := storedEvent(h, data)
	if err != nil {
		return Stored{}, err
	}
	st := Stored{Seq: seq, Event: ev, Stored: ts}
	if tok, ok := strings.CutPrefix(subject, q.names.DirectPrefix+"."); ok {
		st.Direct = tok
	}
	if v := h.Get(HeaderStored); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			st.Stored = t
		}
	}
	if v := h.Get(HeaderNotBefore); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			st.NotBefore = t
		}
	}
	if v := h.Get(HeaderAttempts); v != "" {
		_, _ = fmt.Sscanf(v, "%d", &st.Attempts)
	}
	return st, nil
}

// EventsBounds returns the first and last sequence of the events stream;
// on an empty stream first is last+1.
func (q *Queue) EventsBounds(ctx context.Context) (first, last uint64, err error) {
	st, err := q.js.Stream(ctx, q.names.EventsStream)
	if err != nil {
		return 0, 0, fmt.Errorf("getting events stream: %w", err)
	}
	s := st.CachedInfo().State
	if s.Msgs == 0 {
		return s.LastSeq + 1, s.LastSeq, nil
	}
	return s.FirstSeq, s.LastSeq, nil
}

// PurgeEvents removes every event below sequence below: events no
// subscription needs any more. A purge unlinks whole blocks and writes
// no tombstone per event.
func (q *Queue) PurgeEvents(ctx context.Context, below uint64) error {
	if below <= 1 {
		return nil
	}
	st, err := q.js.Stream(ctx, q.names.EventsStream)
	if err != nil {
		return fmt.Errorf("getting events stream: %w", err)
	}
	if st.CachedInfo().State.FirstSeq >= below {
		return nil
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(below)); err != nil {
		return fmt.Errorf("purging events below sequence %d: %w", below, err)
	}
	return nil
}

// Usage is the events stream's storage use.
type Usage struct {
	Bytes, MaxBytes uint64
	Messages        uint64
	// FirstSeq is the sequence of the oldest event held.
	FirstSeq uint64
}

// Usage reports the events stream's storage use.
func (q *Queue) Usage(ctx context.Context) (Usage, error) {
	st, err := q.js.Stream(ctx, q.names.EventsStream)
	if err != nil {
		return Usage{}, fmt.Errorf("getting events stream: %w", err)
	}
	info := st.CachedInfo()
	u := Usage{Bytes: info.State.Bytes, Messages: info.State.Msgs, FirstSeq: info.State.FirstSeq}
	if info.Config.MaxBytes > 0 {
		u.MaxBytes = uint64(info.Config.MaxBytes)
	}
	return u, nil
}
