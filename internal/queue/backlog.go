package queue

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Move is an event moved out of the events stream's way into a
// subscription's part of the backlog stream.
type Move struct {
	// Token is the subscription's token (SubscriptionToken).
	Token string
	// ID deduplicates the move within the dedup window, so that moving
	// the same event again after a crash stores it once.
	ID string
	// Event is the event as it was stored; its Attempts and NotBefore say
	// how many attempts were made and when it may be tried again.
	Event Stored
}

// Park stores moves in the backlog stream as atomic batches (one sync per
// MaxBatch moves), in order. It returns once they are durable, reporting
// for each where it is stored and whether it was a duplicate of a move
// already stored (Err is nil in each); errors.Is(err, ErrFull) tells a
// full backlog stream. Nothing of a failed batch is stored, but batches
// before it are.
func (q *Queue) Park(ctx context.Context, moves []Move) ([]PublishResult, error) {
	msgs := make([]*nats.Msg, len(moves))
	for i, mv := range moves {
		if err := validateSubscriptionToken(mv.Token); err != nil {
			return nil, fmt.Errorf("moving event %d: %w", i, err)
		}
		m, err := newEventMsg(mv.Event.Event)
		if err != nil {
			return nil, fmt.Errorf("moving event %d: %w", i, err)
		}
		m.Subject = q.backlogSubject(mv.Token)
		if mv.ID != "" {
			m.Header.Set(HeaderMsgID, mv.ID)
		}
		m.Header.Set(HeaderStored, mv.Event.Stored.UTC().Format(time.RFC3339Nano))
		m.Header.Set(HeaderAttempts, strconv.Itoa(mv.Event.Attempts))
		if !mv.Event.NotBefore.IsZero() {
			m.Header.Set(HeaderNotBefore, mv.Event.NotBefore.UTC().Format(time.RFC3339Nano))
		}
		msgs[i] = m
	}
	parked := make([]PublishResult, 0, len(msgs))
	for start := 0; start < len(msgs); start += q.cfg.MaxBatch {
		end := min(start+q.cfg.MaxBatch, len(msgs))
		for _, r := range q.storeBatch(ctx, msgs[start:end]) {
			if r.Err != nil {
				return nil, fmt.Errorf("moving %d events to the backlog stream: %w", end-start, r.Err)
			}
			parked = append(parked, r)
		}
	}
	return parked, nil
}

// ReadBacklog reads a subscription's moved events in order from sequence
// from, as Read does for the events stream.
func (q *Queue) ReadBacklog(ctx context.Context, token string, from uint64, handle func(Stored) error) error {
	return q.read(ctx, q.names.BacklogStream, []string{q.backlogSubject(token)}, from, handle)
}

// PurgeBacklog removes a subscription's moved events below sequence below;
// below 0 removes all of them. It writes the removals with one sync.
func (q *Queue) PurgeBacklog(ctx context.Context, token string, below uint64) error {
	if err := validateSubscriptionToken(token); err != nil {
		return err
	}
	st, err := q.js.Stream(ctx, q.names.BacklogStream)
	if err != nil {
		return fmt.Errorf("getting backlog stream: %w", err)
	}
	opts := []jetstream.StreamPurgeOpt{jetstream.WithPurgeSubject(q.backlogSubject(token))}
	if below > 0 {
		opts = append(opts, jetstream.WithPurgeSequence(below))
	}
	if err := st.Purge(ctx, opts...); err != nil {
		return fmt.Errorf("purging the backlog of %s: %w", token, err)
	}
	return nil
}

// BacklogUsage reports the backlog stream's storage use.
func (q *Queue) BacklogUsage(ctx context.Context) (Usage, error) {
	st, err := q.js.Stream(ctx, q.names.BacklogStream)
	if err != nil {
		return Usage{}, fmt.Errorf("getting backlog stream: %w", err)
	}
	info := st.CachedInfo()
	u := Usage{Bytes: info.State.Bytes, Messages: info.State.Msgs}
	if info.Config.MaxBytes > 0 {
		u.MaxBytes = uint64(info.Config.MaxBytes)
	}
	return u, nil
}

func (q *Queue) backlogSubject(token string) string { return q.names.BacklogPrefix + "." + token }

// DeadLetter stores a copy of ev in the dead-letter stream under the
// subscription. Its id is the subscription UID, the stream it came from
// and its sequence there, so a repeat after a crash is deduplicated within
// the dedup window.
func (q *Queue) DeadLetter(ctx context.Context, subNamespace, subName, subUID string, fromBacklog bool, ev Stored, f Failure) error {
	m, err := newEventMsg(ev.Event)
	if err != nil {
		return fmt.Errorf("dead-lettering event %s: %w", ev.Event.ID, err)
	}
	m.Subject = q.deadLetterSubject(subNamespace, subName)
	src := "e"
	if fromBacklog {
		src = "b"
	}
	m.Header.Set(HeaderMsgID, subUID+"/"+src+strconv.FormatUint(ev.Seq, 10))
	m.Header.Set(HeaderSubscriptionUID, subUID)
	m.Header.Set(HeaderAttempts, strconv.Itoa(f.Attempts))
	m.Header.Set(HeaderFailureClass, headerSafe(f.Class))
	m.Header.Set(HeaderFailureStatus, strconv.Itoa(f.StatusCode))
	m.Header.Set(HeaderFailureMessage, headerSafe(f.Message))
	if _, err := q.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("storing dead letter of event %s: %w", ev.Event.ID, err)
	}
	return nil
}

func (q *Queue) deadLetterSubject(subNamespace, subName string) string {
	return q.names.DeadLetterPrefix + "." + sanitize(subNamespace) + "." + sanitize(subName)
}

// directSubject is where events for one subscription alone are stored.
func (q *Queue) directSubject(token string) string {
	return q.names.DirectPrefix + "." + token
}

func validateSubscriptionToken(token string) error {
	if len(token) <= len(SubscriptionTokenPrefix) || token[:len(SubscriptionTokenPrefix)] != SubscriptionTokenPrefix || sanitize(token) != token {
		return fmt.Errorf("subscription token %q must start with %q and hold no '.', '*', '>', '/', '\\' or white space", token, SubscriptionTokenPrefix)
	}
	return nil
}
