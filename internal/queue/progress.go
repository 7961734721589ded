package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Checkpoint is the latest progress record stored under a key: a
// subscription token or an instance's reader key.
type Checkpoint struct {
	Key  string
	Data []byte
	// Seq is where the progress stream stored it, and Stored when, by the
	// server's clock (both set when read).
	Seq    uint64
	Stored time.Time
}

// ErrClaimed reports that a checkpoint was stored under the key since the
// one a claim expected: another instance claimed it first.
var ErrClaimed = errors.New("claimed by another instance")

// ClaimProgress stores cp only if the last checkpoint under its key is
// still the one stored at sequence last (0: none), so that of several
// instances claiming the same key one succeeds; the others get
// ErrClaimed. It returns the sequence of the stored checkpoint.
func (q *Queue) ClaimProgress(ctx context.Context, cp Checkpoint, last uint64) (uint64, error) {
	if err := validateToken("checkpoint key", cp.Key); err != nil {
		return 0, err
	}
	ack, err := q.js.Publish(ctx, q.names.ProgressPrefix+"."+cp.Key, cp.Data, jetstream.WithExpectLastSequencePerSubject(last))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, fmt.Errorf("claiming checkpoint %s: %w", cp.Key, ErrClaimed)
	}
	if err != nil {
		return 0, fmt.Errorf("claiming checkpoint %s: %w", cp.Key, err)
	}
	return ack.Sequence, nil
}

// SaveProgress stores checkpoints durably: as one atomic batch per
// MaxBatch records, each the new last message of its key, so one sync
// covers them all. Nothing of a failed batch is stored.
func (q *Queue) SaveProgress(ctx context.Context, cps []Checkpoint) error {
	msgs := make([]*nats.Msg, 0, len(cps))
	for _, cp := range cps {
		if err := validateToken("checkpoint key", cp.Key); err != nil {
			return err
		}
		msgs = append(msgs, &nats.Msg{Subject: q.names.ProgressPrefix + "." + cp.Key, Data: cp.Data, Header: nats.Header{}})
	}
	for start := 0; start < len(msgs); start += q.cfg.MaxBatch {
		end := min(start+q.cfg.MaxBatch, len(msgs))
		for _, r := range q.storeBatch(ctx, msgs[start:end]) {
			if r.Err != nil {
				return fmt.Errorf("storing %d checkpoints: %w", end-start, r.Err)
			}
		}
	}
	return nil
}

// DeleteProgress removes the checkpoint of key.
func (q *Queue) DeleteProgress(ctx context.Context, key string) error {
	if err := validateToken("checkpoint key", key); err != nil {
		return err
	}
	st, err := q.js.Stream(ctx, q.names.ProgressStream)
	if err != nil {
		return fmt.Errorf("getting progress stream: %w", err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(q.names.ProgressPrefix+"."+key)); err != nil {
		return fmt.Errorf("deleting checkpoint %s: %w", key, err)
	}
	return nil
}

// WatchProgress calls handle with the latest checkpoint of every key,
// then with every checkpoint stored after, until ctx ends. loaded is
// called once, after the checkpoints stored when the watch began have all
// been handed over (at once when there are none).
func (q *Queue) WatchProgress(ctx context.Context, handle func(Checkpoint), loaded func()) error {
	prefix := q.names.ProgressPrefix + "."
	var out error
	// A failed watch is started again a second later.
	_ = wait.Backoff{Duration: time.Second}.DelayFunc().Until(ctx, true, true, func(ctx context.Context) (bool, error) {
		err := q.watchOnce(ctx, prefix, handle, &loaded)
		switch {
		case ctx.Err() != nil:
			return true, nil
		case errors.Is(err, nats.ErrConnectionClosed):
			out = fmt.Errorf("watching checkpoints: %w", err)
			return true, nil
		}
		q.log.Warn("Watching checkpoints failed, watching again", "error", err)
		return false, nil
	})
	return out
}

func (q *Queue) watchOnce(ctx context.Context, prefix string, handle func(Checkpoint), loaded *func()) error {
	cons, err := q.js.OrderedConsumer(ctx, q.names.ProgressStream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{prefix + ">"},
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("creating checkpoint watcher: %w", err)
	}
	pending := cons.CachedInfo().NumPending
	if pending == 0 && *loaded != nil {
		(*loaded)()
		*loaded = nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(readBatch))
	if err != nil {
		return fmt.Errorf("starting checkpoint watcher: %w", err)
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
		key, _ := strings.CutPrefix(jm.Subject(), prefix)
		md, err := jm.Metadata()
		if err != nil {
			return fmt.Errorf("reading checkpoint metadata: %w", err)
		}
		handle(Checkpoint{Key: key, Data: jm.Data(), Seq: md.Sequence.Stream, Stored: md.Timestamp})
		if *loaded != nil && md.NumPending == 0 {
			(*loaded)()
			*loaded = nil
		}
	}
}
