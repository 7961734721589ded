package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

const (
	// replayChunk is how many dead letters one round of a replay reads,
	// republishes as one atomic batch, then deletes.
	replayChunk = 100
	// replayReaderIdle lets the server remove a replay's reader that its
	// replica could not delete, for instance after losing the connection.
	replayReaderIdle = time.Minute
)

// PublishDirect stores ev for one subscription alone, on its direct
// subject in the events stream: the dispatcher routes it to that
// subscription whatever its type and patterns. Like Publish it returns
// once the event is durable, and errors.Is(err, ErrFull) tells a full
// store.
//
// A non-empty msgID deduplicates the event within the dedup window (the
// result is then Duplicate); an empty one stores it every time, even when
// an event with the same namespace and id was published recently.
func (q *Queue) PublishDirect(ctx context.Context, token string, ev Event, msgID string) (PublishResult, error) {
	m, err := q.directMsg(token, ev, msgID)
	if err != nil {
		return PublishResult{}, fmt.Errorf("validating event for %s: %w", token, err)
	}
	res := q.storeOne(ctx, m)
	if res.Err != nil {
		res.Err = fmt.Errorf("storing event %s for %s: %w", ev.ID, token, res.Err)
	}
	return res, res.Err
}

// directMsg is ev addressed to one subscription alone.
func (q *Queue) directMsg(token string, ev Event, msgID string) (*nats.Msg, error) {
	if err := validateSubscriptionToken(token); err != nil {
		return nil, err
	}
	if msgID != "" {
		if err := validateHeaderValue("message id", msgID); err != nil {
			return nil, err
		}
	}
	m, err := newEventMsg(ev)
	if err != nil {
		return nil, err
	}
	m.Subject = q.directSubject(token)
	if msgID != "" {
		m.Header.Set(HeaderMsgID, msgID)
	}
	return m, nil
}

// ReplayRequest selects dead letters of one subscription.
type ReplayRequest struct {
	// SubscriptionNamespace and SubscriptionName locate the dead letters.
	SubscriptionNamespace, SubscriptionName string
	// SubscriptionUID selects, among them, those of this incarnation of
	// the subscription: one deleted and recreated under the same name
	// does not get its predecessor's letters.
	SubscriptionUID string
	// Token is the subscription's token, SubscriptionToken(UID).
	Token string
	// Since and Until bound, inclusively, when the dead letters were
	// stored; a zero time leaves that side unbounded.
	Since, Until time.Time
	// RequestID makes a repeated request idempotent within the dedup
	// window: the letters it republishes are deduplicated by it. Empty
	// means a fresh one, so a repeat is not deduplicated.
	RequestID string
}

// Replay republishes the selected dead letters to the subscription's
// consumer alone and deletes them, and returns how many it replayed.
//
// Each letter is republished as the original event (same id, type, time,
// namespace and data), with message id "replay/<RequestID>/<dead-letter
// sequence>", and deleted only once the republished event is durable: a
// crash in between leaves the letter to be replayed again, never loses it.
// A replayed delivery that fails again becomes a new dead letter.
//
// Replay reads the letters stored up to the moment it starts; letters added
// meanwhile wait for the next replay. On an error it returns how many it had
// replayed so far.
func (q *Queue) Replay(ctx context.Context, r ReplayRequest) (int, error) {
	if err := r.validate(); err != nil {
		return 0, fmt.Errorf("validating replay request: %w", err)
	}
	if r.RequestID == "" {
		r.RequestID = nuid.Next()
	}
	sub := r.SubscriptionNamespace + "/" + r.SubscriptionName
	dl, err := q.js.Stream(ctx, q.names.DeadLetterStream)
	if err != nil {
		return 0, fmt.Errorf("getting dead-letter stream: %w", err)
	}
	last := dl.CachedInfo().State.LastSeq

	cfg := jetstream.ConsumerConfig{
		Description:       "Hookline replay of " + sub,
		FilterSubject:     q.deadLetterSubject(r.SubscriptionNamespace, r.SubscriptionName),
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: replayReaderIdle,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if !r.Since.IsZero() {
		since := r.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	reader, err := dl.CreateConsumer(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("creating dead-letter reader for %s: %w", sub, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
		defer cancel()
		if err := dl.DeleteConsumer(dctx, reader.CachedInfo().Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			q.log.Warn("Cannot delete dead-letter reader, the server removes it when idle", "subscription", sub, "error", err)
		}
	}()

	replayed := 0
	pending := reader.CachedInfo().NumPending
	for pending > 0 {
		letters, more, err := q.readLetters(reader, r, last, int(min(pending, replayChunk)), &pending)
		if err != nil {
			return replayed, fmt.Errorf("reading dead letters of %s: %w", sub, err)
		}
		n, err := q.replayLetters(ctx, dl, r, letters)
		replayed += n
		if err != nil {
			return replayed, fmt.Errorf("replaying dead letters of %s: %w", sub, err)
		}
		if !more {
			break
		}
	}
	if replayed > 0 {
		q.log.Info("Replayed dead letters", "subscription", sub, "uid", r.SubscriptionUID, "replayed", replayed)
	}
	return replayed, nil
}

func (r ReplayRequest) validate() error {
	if err := validateToken("subscription namespace", r.SubscriptionNamespace); err != nil {
		return err
	}
	if r.SubscriptionName == "" {
		return errors.New("subscription name is empty")
	}
	if r.SubscriptionUID == "" {
		return errors.New("subscription UID is empty")
	}
	if err := validateSubscriptionToken(r.Token); err != nil {
		return err
	}
	if !r.Since.IsZero() && !r.Until.IsZero() && r.Until.Before(r.Since) {
		return fmt.Errorf("until %s is before since %s", r.Until.Format(time.RFC3339Nano), r.Since.Format(time.RFC3339Nano))
	}
	if r.RequestID != "" {
		return validateHeaderValue("request id", r.RequestID)
	}
	return nil
}

// letter is a dead letter to replay.
type letter struct {
	seq uint64
	ev  Event
}

// readLetters fetches up to n letters and keeps those r selects. more is
// false once the reader passed the last letter to replay; pending is
// updated to what the reader still holds.
func (q *Queue) readLetters(reader jetstream.Consumer, r ReplayRequest, last uint64, n int, pending *uint64) (letters []letter, more bool, err error) {
	batch, err := reader.FetchNoWait(n)
	if err != nil {
		return nil, false, err
	}
	got := 0
	more = true
	for jm := range batch.Messages() {
		got++
		md, err := jm.Metadata()
		if err != nil {
			return nil, false, fmt.Errorf("reading dead letter metadata: %w", err)
		}
		*pending = md.NumPending
		// Letters are stored in time order, so the first one past either
		// bound ends the replay.
		if md.Sequence.Stream > last || (!r.Until.IsZero() && md.Timestamp.After(r.Until)) {
			more = false
			continue
		}
		if jm.Headers().Get(HeaderSubscriptionUID) != r.SubscriptionUID {
			continue
		}
		ev, err := storedEvent(jm.Headers(), jm.Data())
		if err != nil {
			// Not written by DeadLetter; it stays for someone to look at.
			q.log.Warn("Skipping malformed dead letter", "sequence", md.Sequence.Stream, "error", err)
			continue
		}
		letters = append(letters, letter{seq: md.Sequence.Stream, ev: ev})
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, false, err
	}
	// Letters deleted since the reader counted them (by a concurrent
	// replay) leave it with nothing to give.
	if got == 0 {
		more = false
	}
	return letters, more && *pending > 0, nil
}

// replayLetters republishes letters as one batch, then deletes those that
// were stored. It returns how many it deleted.
func (q *Queue) replayLetters(ctx context.Context, dl jetstream.Stream, r ReplayRequest, letters []letter) (int, error) {
	if len(letters) == 0 {
		return 0, nil
	}
	msgs := make([]*nats.Msg, len(letters))
	for i, l := range letters {
		m, err := q.directMsg(r.Token, l.ev, replayMsgID(r.RequestID, l.seq))
		if err != nil {
			return 0, fmt.Errorf("dead letter %d: %w", l.seq, err)
		}
		msgs[i] = m
	}
	replayed := 0
	var firstErr error
	for start := 0; start < len(msgs); start += q.cfg.MaxBatch {
		end := min(start+q.cfg.MaxBatch, len(msgs))
		for i, res := range q.storeBatch(ctx, msgs[start:end]) {
			l := letters[start+i]
			if res.Err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("republishing dead letter %d: %w", l.seq, res.Err)
				}
				continue
			}
			// A duplicate was stored by an earlier attempt of this
			// request that did not get to delete the letter.
			deleted, err := deleteLetter(ctx, dl, l.seq)
			if err != nil {
				return replayed, err
			}
			if deleted {
				replayed++
			}
		}
		if firstErr != nil {
			return replayed, firstErr
		}
	}
	return replayed, nil
}

// deleteLetter deletes a replayed letter. It reports false when the letter
// was already gone, deleted by a concurrent replay of the same letters.
func deleteLetter(ctx context.Context, dl jetstream.Stream, seq uint64) (bool, error) {
	err := dl.DeleteMsg(ctx, seq)
	if err == nil {
		return true, nil
	}
	if _, gerr := dl.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return false, fmt.Errorf("deleting replayed dead letter %d: %w", seq, err)
}

// replayMsgID is the message id of a republished dead letter.
func replayMsgID(requestID string, seq uint64) string {
	return "replay/" + requestID + "/" + strconv.FormatUint(seq, 10)
}

// validateHeaderValue checks that s survives a header round trip
// unchanged: a single line, no blanks at either end, bounded.
func validateHeaderValue(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > maxEventIDLength {
		return fmt.Errorf("%s is %d bytes long, maximum is %d", what, len(s), maxEventIDLength)
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == '\uFFFD' {
			return fmt.Errorf("%s contains a control character or invalid UTF-8", what)
		}
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return fmt.Errorf("%s has leading or trailing white space", what)
	}
	return nil
}
