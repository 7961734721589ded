package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/hookline/hookline/internal/eventid"
	"github.com/hookline/hookline/internal/eventtype"
)

// Headers of a stored event.
const (
	HeaderMsgID          = "Nats-Msg-Id"
	HeaderEventID        = "Hookline-Event-Id"
	HeaderEventType      = "Hookline-Event-Type"
	HeaderEventTime      = "Hookline-Event-Time"
	HeaderEventNamespace = "Hookline-Event-Namespace"
)

const (
	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"

	// maxInflightBatches stays well below the server's default of 50
	// atomic batches in flight per stream, leaving room for other replicas.
	maxInflightBatches = 8
	// maxEventIDLength bounds producer-supplied ids, which travel in headers.
	maxEventIDLength = 256
	// batchRetries bounds retries of a batch the server reported incomplete
	// or refused for too many batches in flight; both are transient.
	batchRetries = 5
)

// JetStream API error codes this package reacts to (nats-server errors.json).
const (
	codeAccountResourcesExceeded = 10002
	codeInsufficientResources    = 10023
	codeStorageResourcesExceeded = 10047
	codeStreamStoreFailed        = 10077
	codeDuplicateInProcess       = 10158
	codeBatchIncomplete          = 10176
	codeBatchContainsDuplicate   = 10201
	codeBatchTooManyInflight     = 10210
)

// ErrFull reports that the store refused events for lack of space; nothing
// of the refused events was stored.
var ErrFull = errors.New("queue full")

// Event is one event as stored in the queue.
type Event struct {
	ID, Namespace, Type string
	Time                time.Time
	// Data is the event's data as raw JSON: one valid value, which the
	// caller has checked (Publish does not parse it).
	Data json.RawMessage
}

// PublishResult is the outcome for one published event.
type PublishResult struct {
	// Duplicate is true when an event with the same namespace and id was
	// already stored within the dedup window; it was not stored again.
	Duplicate bool
	// Err is non-nil when the event was not stored.
	Err error
	// Seq is where the stream holds the event: where it was stored, or,
	// for a duplicate, where the first copy was.
	Seq uint64
}

type publishRequest struct {
	msgs []*nats.Msg
	done chan []PublishResult
}

// Publish stores events durably and returns only once JetStream has
// acknowledged them (in embedded mode: synced to disk).
//
// Events of one call are stored as one atomic JetStream batch per MaxBatch
// events, so a chunk is stored whole or not at all. Calls with a single event
// are grouped with concurrent ones into one batch (group commit), because
// every store request costs one fsync.
//
// An event whose "<namespace>/<id>" was stored within the dedup window is not
// stored again and is reported Duplicate. The server refuses a whole atomic
// batch that contains such an event (error 10201, "atomic publish batch
// contains duplicate message id"), so such a batch is republished event by
// event; in that case events before a failing one may already be stored.
//
// The results hold one entry per event. The error is nil when every event
// was stored or was a duplicate; otherwise it is the first failure, and
// errors.Is(err, ErrFull) tells a full store. An invalid event fails the
// whole call before anything is stored.
func (q *Queue) Publish(ctx context.Context, events []Event) ([]PublishResult, error) {
	if len(events) == 0 {
		return nil, nil
	}
	msgs := make([]*nats.Msg, len(events))
	for i, ev := range events {
		m, err := q.eventMsg(ev)
		if err != nil {
			return nil, fmt.Errorf("validating event %d: %w", i, err)
		}
		msgs[i] = m
	}
	var results []PublishResult
	if len(msgs) == 1 {
		r, err := q.publishGrouped(ctx, msgs)
		if err != nil {
			return nil, err
		}
		results = r
	} else {
		results = make([]PublishResult, 0, len(msgs))
		for start := 0; start < len(msgs); start += q.cfg.MaxBatch {
			end := min(start+q.cfg.MaxBatch, len(msgs))
			results = append(results, q.storeBatch(ctx, msgs[start:end])...)
		}
	}
	for _, r := range results {
		if r.Err != nil {
			return results, r.Err
		}
	}
	return results, nil
}

func (q *Queue) publishGrouped(ctx context.Context, msgs []*nats.Msg) ([]PublishResult, error) {
	req := &publishRequest{msgs: msgs, done: make(chan []PublishResult, 1)}
	select {
	case <-q.stop:
		return nil, ErrClosed
	default:
	}
	select {
	case q.group <- req:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting to publish event: %w", ctx.Err())
	case <-q.stop:
		return nil, ErrClosed
	}
	select {
	case r := <-req.done:
		return r, nil
	case <-q.groupDone:
		// A request queued while Close stopped the group committer is
		// never picked up.
		select {
		case r := <-req.done:
			return r, nil
		default:
			return nil, ErrClosed
		}
	case <-ctx.Done():
		// The event may still be stored; a producer retrying with the same
		// id is deduplicated.
		return nil, fmt.Errorf("waiting for event to be stored: %w", ctx.Err())
	}
}

// groupCommit stores single-event requests: whatever arrived while the
// previous batch was in flight goes as the next batch.
func (q *Queue) groupCommit() {
	defer close(q.groupDone)
	for {
		var first *publishRequest
		select {
		case <-q.stop:
			for {
				select {
				case r := <-q.group:
					r.done <- failAll(len(r.msgs), ErrClosed)
				default:
					return
				}
			}
		case first = <-q.group:
		}
		reqs := []*publishRequest{first}
		n := len(first.msgs)
	collect:
		for n < q.cfg.MaxBatch {
			select {
			case r := <-q.group:
				reqs = append(reqs, r)
				n += len(r.msgs)
			default:
				break collect
			}
		}
		q.storeGroup(reqs, n)
	}
}

func (q *Queue) storeGroup(reqs []*publishRequest, n int) {
	// Not any caller's context: the group serves them all, and a caller
	// that gives up still gets dedup when it retries.
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	msgs := make([]*nats.Msg, 0, n)
	for _, r := range reqs {
		msgs = append(msgs, r.msgs...)
	}
	results := q.storeBatch(ctx, msgs)
	if len(reqs) > 1 && allFailed(results) {
		// A refused batch is refused whole; store each request on its own
		// so that one request's failure is not reported for the others.
		for _, r := range reqs {
			r.done <- q.storeBatch(ctx, r.msgs)
		}
		return
	}
	i := 0
	for _, r := range reqs {
		r.done <- results[i : i+len(r.msgs)]
		i += len(r.msgs)
	}
}

// storeBatch stores msgs as one atomic batch, or as one message.
func (q *Queue) storeBatch(ctx context.Context, msgs []*nats.Msg) []PublishResult {
	if len(msgs) == 1 {
		return []PublishResult{q.storeOne(ctx, msgs[0])}
	}
	select {
	case q.batchSem <- struct{}{}:
		defer func() { <-q.batchSem }()
	case <-ctx.Done():
		return failAll(len(msgs), fmt.Errorf("waiting to publish batch: %w", ctx.Err()))
	}
	backoff := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		last, err := q.atomicBatch(ctx, msgs)
		if err == nil {
			// A batch is stored at consecutive sequences.
			results := make([]PublishResult, len(msgs))
			for i := range results {
				results[i].Seq = last - uint64(len(msgs)-1-i)
			}
			return results
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode {
			case codeBatchContainsDuplicate:
				q.log.Debug("Atomic batch holds an already stored event id, storing events one by one", "events", len(msgs))
				results := make([]PublishResult, len(msgs))
				for i, m := range msgs {
					results[i] = q.storeOne(ctx, m)
				}
				return results
			case codeBatchIncomplete, codeBatchTooManyInflight:
				if attempt < batchRetries && sleepCtx(ctx, backoff) {
					backoff *= 2
					continue
				}
			}
		}
		return failAll(len(msgs), err)
	}
}

// atomicBatch sends msgs as one JetStream atomic batch: every message but
// the last as a plain publish, the last, carrying the commit header, as a
// request whose reply is the batch's PubAck or error. It returns the
// sequence of the last message.
func (q *Queue) atomicBatch(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	id := nuid.Next()
	var resp *nats.Msg
	for i, m := range msgs {
		bm := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: make(nats.Header, len(m.Header)+3)}
		for k, v := range m.Header {
			bm.Header[k] = v
		}
		bm.Header.Set(headerBatchID, id)
		bm.Header.Set(headerBatchSeq, strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := q.nc.PublishMsg(bm); err != nil {
				return 0, fmt.Errorf("publishing batch message: %w", err)
			}
			continue
		}
		bm.Header.Set(headerBatchCommit, "1")
		q.publishRoundTrips.Add(1)
		var err error
		resp, err = q.nc.RequestMsgWithContext(ctx, bm)
		if err != nil {
			return 0, fmt.Errorf("committing batch of %d events: %w", len(msgs), err)
		}
	}
	var ack struct {
		Stream string              `json:"stream"`
		Error  *jetstream.APIError `json:"error"`
		Count  int                 `json:"count"`
		Seq    uint64              `json:"seq"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("decoding batch acknowledgement: %w", err)
	}
	if ack.Error != nil {
		return 0, fmt.Errorf("committing batch of %d events: %w", len(msgs), classify(ack.Error))
	}
	if ack.Stream == "" {
		return 0, fmt.Errorf("committing batch of %d events: %w", len(msgs), jetstream.ErrInvalidJSAck)
	}
	return ack.Seq, nil
}

func (q *Queue) storeOne(ctx context.Context, m *nats.Msg) PublishResult {
	backoff := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		q.publishRoundTrips.Add(1)
		ack, err := q.js.PublishMsg(ctx, m)
		if err == nil {
			return PublishResult{Duplicate: ack.Duplicate, Seq: ack.Sequence}
		}
		var apiErr *jetstream.APIError
		// A cluster may still be storing the same id from a concurrent
		// request; once it has, the retry is reported as a duplicate.
		if errors.As(err, &apiErr) && apiErr.ErrorCode == codeDuplicateInProcess &&
			attempt < batchRetries && sleepCtx(ctx, backoff) {
			backoff *= 2
			continue
		}
		if errors.As(err, &apiErr) {
			err = classify(apiErr)
		}
		return PublishResult{Err: fmt.Errorf("publishing event: %w", err)}
	}
}

// classify adds ErrFull to errors that mean the store has no room.
func classify(apiErr *jetstream.APIError) error {
	switch apiErr.ErrorCode {
	case codeAccountResourcesExceeded, codeInsufficientResources, codeStorageResourcesExceeded:
		return fmt.Errorf("%w: %w", ErrFull, apiErr)
	case codeStreamStoreFailed:
		d := strings.ToLower(apiErr.Description)
		if strings.Contains(d, "maximum bytes") || strings.Contains(d, "maximum messages") ||
			strings.Contains(d, "no space left") {
			return fmt.Errorf("%w: %w", ErrFull, apiErr)
		}
	}
	return apiErr
}

func allFailed(results []PublishResult) bool {
	for _, r := range results {
		if r.Err == nil {
			return false
		}
	}
	return true
}

func failAll(n int, err error) []PublishResult {
	r := make([]PublishResult, n)
	for i := range r {
		r[i].Err = err
	}
	return r
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// eventMsg is ev as stored for routing by type, deduplicated by namespace
// and id.
func (q *Queue) eventMsg(ev Event) (*nats.Msg, error) {
	m, err := newEventMsg(ev)
	if err != nil {
		return nil, err
	}
	m.Subject = q.names.EventsPrefix + "." + ev.Namespace + "." + ev.Type
	m.Header.Set(HeaderMsgID, ev.Namespace+"/"+ev.ID)
	return m, nil
}

// newEventMsg validates ev and returns it as a message with the event
// headers and no subject.
func newEventMsg(ev Event) (*nats.Msg, error) {
	if err := validateEventID(ev.ID); err != nil {
		return nil, err
	}
	if err := validateToken("namespace", ev.Namespace); err != nil {
		return nil, err
	}
	if err := eventtype.ValidateType(ev.Type); err != nil {
		return nil, err
	}
	if ev.Time.IsZero() {
		return nil, errors.New("event time is not set")
	}
	// Data is not parsed again: every event reaches the queue through the
	// ingest API, which has checked it is one compact JSON value, or is a
	// stored event sent again. On the hot path of ingest a second full
	// check cost more than decoding the request did.
	if len(ev.Data) == 0 {
		return nil, errors.New("event data is empty")
	}
	m := &nats.Msg{Data: ev.Data, Header: make(nats.Header, 5)}
	m.Header.Set(HeaderEventID, ev.ID)
	m.Header.Set(HeaderEventType, ev.Type)
	m.Header.Set(HeaderEventTime, ev.Time.UTC().Format(time.RFC3339Nano))
	m.Header.Set(HeaderEventNamespace, ev.Namespace)
	return m, nil
}

// validateEventID applies the one rule for event ids (internal/eventid),
// which ingest applies to producers too.
func validateEventID(id string) error {
	if err := eventid.Validate(id); err != nil {
		return fmt.Errorf("event id: %w", err)
	}
	return nil
}

// validateToken checks that s is usable as one NATS subject token.
func validateToken(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || r == '.' || r == '*' || r == '>' {
			return fmt.Errorf("%s %q contains %q, which a subject token cannot hold", what, s, r)
		}
	}
	return nil
}

// PublishRoundTrips is how many store requests (single publishes and batch
// commits) were sent since Open; group commit keeps it below the number of
// events published.
func (q *Queue) PublishRoundTrips() int64 { return q.publishRoundTrips.Load() }
