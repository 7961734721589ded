package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SubscriptionConsumerPrefix starts the name of every subscription consumer.
const SubscriptionConsumerPrefix = "sub-"

// Headers added to a dead-lettered copy.
const (
	HeaderAttempts        = "Hookline-Attempts"
	HeaderFailureClass    = "Hookline-Failure-Class"
	HeaderFailureStatus   = "Hookline-Failure-Status"
	HeaderFailureMessage  = "Hookline-Failure-Message"
	HeaderSubscriptionUID = "Hookline-Subscription-Uid"
)

const (
	// fetchWindow is how long one pull request waits for messages. Short
	// enough that freed handler slots are soon offered again, long enough
	// that idle consumers cost few requests.
	fetchWindow = 10 * time.Second
	// maxFailureMessage bounds the failure text kept with a dead letter.
	maxFailureMessage = 1024
)

// pausedUntil pauses a suspended subscription's consumer on the server
// rather than merely not consuming it: then no replica delivers, whichever
// replica still runs a worker, and events keep accumulating (the consumer
// still holds interest) until the subscription resumes. A fixed date keeps
// EnsureConsumer idempotent.
var pausedUntil = time.Date(2200, time.January, 1, 0, 0, 0, 0, time.UTC)

// ConsumerSpec describes the durable consumer of one subscription.
type ConsumerSpec struct {
	// Name is "sub-<subscription UID>".
	Name string
	// Namespace is the subscription's namespace, which is the namespace of
	// the events it receives.
	Namespace string
	// Patterns are event type patterns (eventtype grammar, validated).
	Patterns []string
	// MaxAckPending is the subscription's concurrency across all replicas.
	MaxAckPending int
	// AckWait is how long a delivery may take before it is redelivered.
	AckWait time.Duration
	// Paused pauses the consumer on the server (see pausedUntil).
	Paused bool
	// Gone records on the consumer that the endpoint answered 410 Gone at
	// the subscription's Generation, so that every replica holds it (see
	// GoneGeneration).
	Gone       bool
	Generation int64
}

// metadataGoneGeneration is the consumer metadata key of ConsumerSpec.Gone.
const metadataGoneGeneration = "hookline.dev/gone-generation"

func (q *Queue) consumerConfig(spec ConsumerSpec) (jetstream.ConsumerConfig, error) {
	if err := validateConsumerName(spec.Name); err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	if err := validateToken("namespace", spec.Namespace); err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	if spec.MaxAckPending < 1 {
		return jetstream.ConsumerConfig{}, fmt.Errorf("max ack pending must be positive, got %d", spec.MaxAckPending)
	}
	if spec.AckWait <= 0 {
		return jetstream.ConsumerConfig{}, fmt.Errorf("ack wait must be positive, got %s", spec.AckWait)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       spec.Name,
		Description:   "Hookline subscription in namespace " + spec.Namespace,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       spec.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: spec.MaxAckPending,
		// The direct subject differs from every event subject in the
		// token after the dispatcher's prefix, so adding it never makes
		// filters overlap, whatever FilterSubjects kept.
		FilterSubjects: append(FilterSubjects(q.names.EventsPrefix+"."+spec.Namespace, spec.Patterns), q.directSubject(spec.Name)),
	}
	if spec.Paused || spec.Gone {
		t := pausedUntil
		cfg.PauseUntil = &t
	}
	if spec.Gone {
		cfg.Metadata = map[string]string{metadataGoneGeneration: strconv.FormatInt(spec.Generation, 10)}
	}
	return cfg, nil
}

// EnsureConsumer creates the subscription's consumer or updates it in place.
// It sends nothing when the last configuration this Queue applied is
// unchanged.
func (q *Queue) EnsureConsumer(ctx context.Context, spec ConsumerSpec) error {
	cfg, err := q.consumerConfig(spec)
	if err != nil {
		return fmt.Errorf("validating consumer %s: %w", spec.Name, err)
	}
	q.consumersMu.Lock()
	last, ok := q.consumers[spec.Name]
	q.consumersMu.Unlock()
	if ok && reflect.DeepEqual(last, cfg) {
		return nil
	}
	c, err := q.js.CreateOrUpdateConsumer(ctx, q.names.EventsStream, cfg)
	if err != nil {
		return fmt.Errorf("creating or updating consumer %s: %w", spec.Name, err)
	}
	// An update that omits the pause deadline leaves an existing pause in
	// place, so resuming needs its own request.
	hold := spec.Paused || spec.Gone
	if info := c.CachedInfo(); info != nil && info.Paused && !hold {
		if _, err := q.js.ResumeConsumer(ctx, q.names.EventsStream, spec.Name); err != nil {
			return fmt.Errorf("resuming consumer %s: %w", spec.Name, err)
		}
	}
	// Likewise an update that sets the deadline does not pause a running
	// consumer.
	if info := c.CachedInfo(); info != nil && !info.Paused && hold {
		if _, err := q.js.PauseConsumer(ctx, q.names.EventsStream, spec.Name, pausedUntil); err != nil {
			return fmt.Errorf("pausing consumer %s: %w", spec.Name, err)
		}
	}
	q.consumersMu.Lock()
	q.consumers[spec.Name] = cfg
	q.consumersMu.Unlock()
	return nil
}

// GoneGeneration is the subscription generation at which some replica
// recorded the endpoint as gone on the consumer, 0 if none did or the
// consumer does not exist. It reads the server, not this Queue's cache,
// since another replica may have written it.
func (q *Queue) GoneGeneration(ctx context.Context, name string) (int64, error) {
	c, err := q.js.Consumer(ctx, q.names.EventsStream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("getting consumer %s: %w", name, err)
	}
	v, ok := c.CachedInfo().Config.Metadata[metadataGoneGeneration]
	if !ok {
		return 0, nil
	}
	g, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("consumer %s: metadata %s: %w", name, metadataGoneGeneration, err)
	}
	return g, nil
}

// DeleteConsumer deletes a subscription's consumer; a missing one is fine.
func (q *Queue) DeleteConsumer(ctx context.Context, name string) error {
	q.forget(name)
	err := q.js.DeleteConsumer(ctx, q.names.EventsStream, name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("deleting consumer %s: %w", name, err)
	}
	return nil
}

func (q *Queue) forget(name string) {
	q.consumersMu.Lock()
	delete(q.consumers, name)
	q.consumersMu.Unlock()
}

// ConsumerNames lists the subscription consumers ("sub-*") of the events
// stream, for garbage collection.
func (q *Queue) ConsumerNames(ctx context.Context) ([]string, error) {
	st, err := q.js.Stream(ctx, q.names.EventsStream)
	if err != nil {
		return nil, fmt.Errorf("looking up events stream: %w", err)
	}
	lister := st.ConsumerNames(ctx)
	var names []string
	for n := range lister.Name() {
		if strings.HasPrefix(n, SubscriptionConsumerPrefix) {
			names = append(names, n)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("listing consumers: %w", err)
	}
	return names, nil
}

// Usage is the events stream's storage use.
type Usage struct {
	Bytes, MaxBytes uint64
	Messages        uint64
}

// Usage reports the events stream's storage use.
func (q *Queue) Usage(ctx context.Context) (Usage, error) {
	st, err := q.js.Stream(ctx, q.names.EventsStream)
	if err != nil {
		return Usage{}, fmt.Errorf("getting events stream: %w", err)
	}
	info := st.CachedInfo()
	u := Usage{Bytes: info.State.Bytes, Messages: info.State.Msgs}
	if info.Config.MaxBytes > 0 {
		u.MaxBytes = uint64(info.Config.MaxBytes)
	}
	return u, nil
}

// directSubject is where events for the named consumer alone are stored.
func (q *Queue) directSubject(consumer string) string {
	return q.names.DirectPrefix + "." + consumer
}

func (q *Queue) deadLetterSubject(subNamespace, subName string) string {
	return q.names.DeadLetterPrefix + "." + sanitize(subNamespace) + "." + sanitize(subName)
}

// Message is one delivery of an event to a subscription's consumer.
type Message struct {
	Event Event
	// Attempt is the delivery count, 1 on the first delivery.
	Attempt int
	// Stored is when JetStream stored the event.
	Stored time.Time
	// Direct reports that the event was addressed to this consumer alone
	// (see PublishDirect), such as a replayed dead letter, rather than
	// routed to it by its type.
	Direct bool

	msg       jetstream.Msg
	streamSeq uint64
	q         *Queue
}

// Ack marks the delivery done, waiting for the server to confirm.
func (m *Message) Ack(ctx context.Context) error {
	if err := m.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("acknowledging event %s: %w", m.Event.ID, err)
	}
	return nil
}

// Retry asks for redelivery after delay.
func (m *Message) Retry(ctx context.Context, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("scheduling retry of event %s: %w", m.Event.ID, err)
	}
	if err := m.msg.NakWithDelay(delay); err != nil {
		return fmt.Errorf("scheduling retry of event %s: %w", m.Event.ID, err)
	}
	return nil
}

// InProgress restarts the delivery's ack wait.
func (m *Message) InProgress() error {
	if err := m.msg.InProgress(); err != nil {
		return fmt.Errorf("extending ack wait of event %s: %w", m.Event.ID, err)
	}
	return nil
}

// Failure describes why a delivery was dead-lettered.
type Failure struct {
	Class      string
	StatusCode int
	Message    string
	Attempts   int
}

// DeadLetter stores a copy of the event in the dead-letter stream, under the
// subscription, and only once that is durable acknowledges the original so
// that it is not delivered again. The copy's id is the subscription UID and
// stream sequence, so a repeat after a lost acknowledgement is deduplicated.
func (m *Message) DeadLetter(ctx context.Context, subNamespace, subName, subUID string, f Failure) error {
	dm := &nats.Msg{
		Subject: m.q.deadLetterSubject(subNamespace, subName),
		Data:    m.msg.Data(),
		Header:  make(nats.Header),
	}
	for k, v := range m.msg.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		dm.Header[k] = v
	}
	dm.Header.Set(HeaderMsgID, subUID+"/"+strconv.FormatUint(m.streamSeq, 10))
	dm.Header.Set(HeaderSubscriptionUID, subUID)
	dm.Header.Set(HeaderAttempts, strconv.Itoa(f.Attempts))
	dm.Header.Set(HeaderFailureClass, headerSafe(f.Class))
	dm.Header.Set(HeaderFailureStatus, strconv.Itoa(f.StatusCode))
	dm.Header.Set(HeaderFailureMessage, headerSafe(f.Message))
	if _, err := m.q.js.PublishMsg(ctx, dm); err != nil {
		return fmt.Errorf("storing dead letter of event %s: %w", m.Event.ID, err)
	}
	if err := m.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("acknowledging dead-lettered event %s: %w", m.Event.ID, err)
	}
	return nil
}

// headerSafe makes s a single header line of bounded length.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) > maxFailureMessage {
		cut := maxFailureMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.TrimSpace(s)
}

func (q *Queue) newMessage(jm jetstream.Msg) (*Message, error) {
	md, err := jm.Metadata()
	if err != nil {
		return nil, fmt.Errorf("reading message metadata: %w", err)
	}
	ev, err := storedEvent(jm.Headers(), jm.Data())
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", md.Sequence.Stream, err)
	}
	return &Message{
		Event:     ev,
		Attempt:   int(md.NumDelivered),
		Stored:    md.Timestamp,
		Direct:    strings.HasPrefix(jm.Subject(), q.names.DirectPrefix+"."),
		msg:       jm,
		streamSeq: md.Sequence.Stream,
		q:         q,
	}, nil
}

// storedEvent reads an event back from the headers and body it was stored
// with; dead letters carry the same headers.
func storedEvent(h nats.Header, data []byte) (Event, error) {
	ev := Event{
		ID:        h.Get(HeaderEventID),
		Namespace: h.Get(HeaderEventNamespace),
		Type:      h.Get(HeaderEventType),
		Data:      data,
	}
	if ev.ID == "" || ev.Namespace == "" || ev.Type == "" {
		return Event{}, errors.New("lacks event headers")
	}
	var err error
	ev.Time, err = time.Parse(time.RFC3339Nano, h.Get(HeaderEventTime))
	if err != nil {
		return Event{}, fmt.Errorf("parsing event time: %w", err)
	}
	return ev, nil
}

// Consume pulls the consumer's messages until ctx ends, running handle in
// its own goroutine for each, with at most concurrency handlers in flight.
// It pulls only as many messages as there are free handlers, so no message
// waits in a client buffer while its ack wait runs. Transient errors (the
// consumer not yet created, a lost connection) are logged and retried with
// backoff. It returns once ctx is done and every handler has returned.
func (q *Queue) Consume(ctx context.Context, name string, concurrency int, handle func(context.Context, *Message)) error {
	if concurrency < 1 {
		return fmt.Errorf("consuming %s: concurrency must be positive, got %d", name, concurrency)
	}
	log := q.log.With("consumer", name)
	slots := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()

	var cons jetstream.Consumer
	const minBackoff = 200 * time.Millisecond
	backoff := minBackoff
	fail := func(msg string, err error) bool {
		log.Warn(msg, "error", err, "retryIn", backoff)
		ok := sleepCtx(ctx, backoff)
		backoff = min(2*backoff, 30*time.Second)
		return ok
	}
	for ctx.Err() == nil {
		if cons == nil {
			var err error
			cons, err = q.js.Consumer(ctx, q.names.EventsStream, name)
			if err != nil {
				if ctx.Err() != nil || !fail("Cannot get consumer", err) {
					break
				}
				continue
			}
		}
		// Wait for one free slot, then take every other free one.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		n := 1
	grab:
		for n < concurrency {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break grab
			}
		}
		got, err := q.fetchInto(ctx, cons, n, slots, &wg, handle, log)
		for range n - got {
			<-slots
		}
		switch {
		case ctx.Err() != nil:
		case err != nil:
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				q.forget(name)
				cons = nil
			}
			if errors.Is(err, nats.ErrConnectionClosed) {
				return fmt.Errorf("consuming %s: %w", name, err)
			}
			fail("Fetching messages failed", err)
		default:
			backoff = minBackoff
		}
	}
	return nil
}

// fetchInto pulls up to n messages and starts a handler for each; it returns
// how many it started, each of which releases one slot when done.
func (q *Queue) fetchInto(ctx context.Context, cons jetstream.Consumer, n int, slots chan struct{}, wg *sync.WaitGroup,
	handle func(context.Context, *Message), log *slog.Logger) (int, error) {
	fctx, cancel := context.WithTimeout(ctx, fetchWindow)
	defer cancel()
	start := time.Now()
	batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return 0, err
	}
	got := 0
	for jm := range batch.Messages() {
		m, err := q.newMessage(jm)
		if err != nil {
			// Not an event this package stored: it can never be delivered.
			log.Error("Terminating malformed message", "error", err)
			_ = jm.TermWithReason("malformed event")
			continue
		}
		got++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			handle(ctx, m)
		}()
	}
	err = batch.Error()
	if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = nil
	}
	// A pull that ends at once with nothing, for instance on a paused
	// consumer, must not turn the loop into a busy one.
	if err == nil && got == 0 && time.Since(start) < time.Second {
		sleepCtx(ctx, time.Second)
	}
	return got, err
}
