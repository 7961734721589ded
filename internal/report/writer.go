package report

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// State is what the dispatcher knows about a subscription besides the
// outcomes of its deliveries.
type State struct {
	// Object is the subscription as the informer cache holds it. It is
	// shared with the cache and must not be modified.
	Object *hooklinev1.WebhookSubscription
	// Accepted is true while the dispatcher serves the subscription;
	// AcceptedReason and AcceptedMessage explain the Accepted condition.
	Accepted                        bool
	AcceptedReason, AcceptedMessage string
	// SuspendedReason is empty unless deliveries are held (by spec.suspend,
	// the circuit breaker or a 410 answer); SuspendedMessage explains it.
	SuspendedReason, SuspendedMessage string
	// Backlog is the number of events the queue holds for the
	// subscription.
	Backlog int64
	// DeadLettered is the number of the subscription's events the
	// dead-letter store keeps.
	DeadLettered int64
	// SuspendAfter is how long every attempt may fail before the writer
	// suspends the subscription; zero never suspends.
	SuspendAfter time.Duration
	// Validation is the outcome of the endpoint validation handshake, nil
	// when the subscription asks for none.
	Validation *Validation
	// LastReplay is the last replay of dead letters the annotation asked
	// for, nil if none was.
	LastReplay *hooklinev1.ReplayStatus
	// Totals are the subscription's delivery totals as the dispatcher's
	// checkpoints hold them, reported as they are. Nil keeps what the
	// status held when the writer first saw the subscription.
	Totals *Totals
}

// Validation is the outcome of the endpoint validation handshake.
type Validation struct {
	Allowed         bool
	Reason, Message string
}

// Source is what the dispatcher tells the status writer. One type answers
// every question, so the writer depends on one narrow view of the
// dispatcher rather than on callbacks into its parts.
type Source interface {
	// Keys lists the subscriptions served now, so those without traffic
	// still get their Accepted condition and backlog written.
	Keys() []Key
	// BeforeTick runs at the start of every tick, before the tick's first
	// Lookup, so that what every lookup needs (the queue's backlogs, read
	// with one listing) is read once per tick rather than once per
	// subscription.
	BeforeTick(ctx context.Context)
	// Lookup returns the current state of a subscription, or false when
	// it is gone, in which case the writer forgets it.
	Lookup(ns, name string) (State, bool)
	// Suspended is told when the writer suspends a subscription after
	// sustained failure, with the message of its Suspended condition, so
	// the dispatcher can hold it at once and emit an Event.
	Suspended(obj *hooklinev1.WebhookSubscription, message string)
}

// Options configure a Writer.
type Options struct {
	// Client writes the statuses. Required.
	Client dynamic.Interface
	// Interval is the least time between two writes of one subscription's
	// status. Default 10s.
	Interval time.Duration
	// FieldManager owns what the writer applies. Default
	// "hookline-dispatcher".
	FieldManager string
	// UnhealthyAfter is how many attempts in a row must fail before
	// EndpointHealthy turns False. Default 3.
	UnhealthyAfter int
	// Clock drives the ticks. Default the real clock.
	Clock clock.Clock
	// Logger receives the writer's logs. Default slog.Default().
	Logger *slog.Logger
	// Source is what the writer reports: the subscriptions served and
	// their state. Required.
	Source Source
	// MaxInFlight is how many status applies one tick may have in flight
	// at once. Default DefaultMaxInFlight. The client's rate limit (QPS
	// and burst) bounds them too.
	MaxInFlight int
}

// Defaults of Options.
const (
	DefaultInterval       = 10 * time.Second
	DefaultFieldManager   = "hookline-dispatcher"
	DefaultUnhealthyAfter = 3
	// DefaultMaxInFlight keeps a few applies in flight: one at a time, a
	// round trip of 10-25 ms limits a dispatcher to 40-100 writes a
	// second, under what 1,000 busy subscriptions need at a 10 s interval.
	DefaultMaxInFlight = 8
)

var subscriptionsResource = hooklinev1.GroupVersion.WithResource("webhooksubscriptions")

// Writer writes the delivery health of subscriptions into their statuses.
type Writer struct {
	client         dynamic.Interface
	interval       time.Duration
	fieldManager   string
	unhealthyAfter int
	clock          clock.Clock
	log            *slog.Logger
	source         Source
	maxInFlight    int

	writes atomic.Int64
	// prompts carries subscriptions whose status should be written at
	// once, not at the next tick (see Prompt).
	prompts chan promptRequest

	// The fields below belong to the goroutine running Run.

	subs map[types.NamespacedName]*subscription
}

// subscription is the writer's view of one subscription.
type subscription struct {
	key types.NamespacedName
	// known is set once the totals were read from the object's status.
	known  bool
	uid    types.UID
	totals Totals
	// written is what the status holds, as last written or first read.
	written applyStatus
	// failedTicks counts ticks in a row whose write failed.
	failedTicks int
}

// NewWriter returns a Writer; Run starts it.
func NewWriter(opts Options) *Writer {
	w := &Writer{
		client:         opts.Client,
		interval:       cmp.Or(opts.Interval, DefaultInterval),
		fieldManager:   cmp.Or(opts.FieldManager, DefaultFieldManager),
		unhealthyAfter: cmp.Or(opts.UnhealthyAfter, DefaultUnhealthyAfter),
		clock:          opts.Clock,
		log:            opts.Logger,
		source:         opts.Source,
		maxInFlight:    cmp.Or(max(opts.MaxInFlight, 0), DefaultMaxInFlight),
		prompts:        make(chan promptRequest, promptBuffer),
	}
	if w.clock == nil {
		w.clock = clock.RealClock{}
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	return w
}

// promptBuffer bounds the prompts waiting for the writer; one that does not
// fit waits for the next tick.
const promptBuffer = 1024

type promptRequest struct {
	key        types.NamespacedName
	generation int64
}

// Prompt asks for the status of a subscription to be written at once when
// it does not describe generation yet, so that a new subscription, or a
// new spec, shows it is served without waiting for the next tick. It never
// blocks.
func (w *Writer) Prompt(namespace, name string, generation int64) {
	select {
	case w.prompts <- promptRequest{key: types.NamespacedName{Namespace: namespace, Name: name}, generation: generation}:
	default:
	}
}

// Writes returns how many status applies succeeded.
func (w *Writer) Writes() int64 { return w.writes.Load() }

// Run writes statuses until ctx ends, then returns nil. Run it only while
// holding the status leadership, and never twice at once.
//
// Every Interval, on one tick, each subscription's status is applied when
// what the source's Lookup says differs from what the status holds. The first tick comes
// one Interval after Run starts, so a new leader does not write sooner than
// the previous one could have. Between ticks, Prompt writes the statuses
// that do not describe a new generation yet.
func (w *Writer) Run(ctx context.Context) error {
	if w.client == nil || w.source == nil {
		return errors.New("running the status writer: a client and a source are required")
	}
	// Another leader may have written since an earlier Run: start over
	// from the statuses.
	w.subs = make(map[types.NamespacedName]*subscription)

	next := w.clock.Now().Add(w.interval)
	timer := w.clock.NewTimer(w.interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case p := <-w.prompts:
			w.prompted(ctx, p)
		case <-timer.C():
			w.tick(ctx)
			// Ticks stay on the schedule of the first one; ticks a slow
			// write batch overran are skipped rather than run back to back.
			now := w.clock.Now()
			next = next.Add(w.interval)
			for next.Before(now) {
				next = next.Add(w.interval)
			}
			timer.Reset(next.Sub(now))
		}
	}
}

func (w *Writer) subscription(key types.NamespacedName) *subscription {
	s := w.subs[key]
	if s == nil {
		s = &subscription{key: key}
		w.subs[key] = s
	}
	return s
}

// tick writes every status that changed.
//
// Only the applies run concurrently, up to maxInFlight of them: looking a
// subscription up and settling the outcome of its write stay on this
// goroutine, so the writer's own state needs no lock.
func (w *Writer) tick(ctx context.Context) {
	now := w.clock.Now()
	w.source.BeforeTick(ctx)
	for _, k := range w.source.Keys() {
		w.subscription(types.NamespacedName{Namespace: k.Namespace, Name: k.Name})
	}
	keys := make([]types.NamespacedName, 0, len(w.subs))
	for k := range w.subs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b types.NamespacedName) int { return cmp.Compare(a.String(), b.String()) })
	w.write(ctx, keys, now)
}

// prompted writes the statuses prompted for (the first one and those
// queued behind it) whose Accepted condition does not describe the
// generation asked about yet.
func (w *Writer) prompted(ctx context.Context, first promptRequest) {
	var keys []types.NamespacedName
	seen := map[types.NamespacedName]bool{}
	add := func(p promptRequest) {
		if seen[p.key] {
			return
		}
		if s := w.subs[p.key]; s != nil && s.known {
			if c := meta.FindStatusCondition(s.written.Conditions, hooklinev1.ConditionAccepted); c != nil && c.ObservedGeneration >= p.generation {
				return
			}
		}
		seen[p.key] = true
		w.subscription(p.key)
		keys = append(keys, p.key)
	}
	add(first)
	for more := true; more; {
		select {
		case p := <-w.prompts:
			add(p)
		default:
			more = false
		}
	}
	if len(keys) > 0 {
		w.write(ctx, keys, w.clock.Now())
	}
}

// write prepares and applies the statuses of keys, up to maxInFlight
// applies at once.
func (w *Writer) write(ctx context.Context, keys []types.NamespacedName, now time.Time) {
	queued := make(chan *pendingWrite)
	done := make(chan *pendingWrite)
	var appliers sync.WaitGroup
	for range w.maxInFlight {
		appliers.Go(func() {
			for pw := range queued {
				pw.err = w.apply(ctx, pw.obj, pw.desired)
				done <- pw
			}
		})
	}
	inFlight := 0
	for _, k := range keys {
		if ctx.Err() != nil {
			break
		}
		s := w.subs[k]
		if s == nil {
			continue
		}
		pw := w.prepare(s, now)
		for pw != nil {
			select {
			case queued <- pw:
				inFlight++
				pw = nil
			case finished := <-done:
				inFlight--
				w.settle(ctx, finished)
			}
		}
	}
	close(queued)
	for ; inFlight > 0; inFlight-- {
		w.settle(ctx, <-done)
	}
	appliers.Wait()
}

// pendingWrite is one status apply of a tick: what to write and, once
// applied, the outcome.
type pendingWrite struct {
	s       *subscription
	obj     *hooklinev1.WebhookSubscription
	desired applyStatus
	err     error
}

// prepare returns the write one subscription's status needs, nil when it
// needs none (unchanged or gone).
func (w *Writer) prepare(s *subscription, now time.Time) *pendingWrite {
	state, ok := w.source.Lookup(s.key.Namespace, s.key.Name)
	if !ok || state.Object == nil {
		w.forget(s)
		return nil
	}
	obj := state.Object
	if s.known && s.uid != obj.UID {
		// Deleted and created again: what was read belongs to the object
		// that is gone.
		s = &subscription{key: s.key}
		w.subs[s.key] = s
	}
	if !s.known {
		s.known, s.uid = true, obj.UID
		s.totals = TotalsFromStatus(obj.Status.Delivery)
		s.written = ownedStatus(obj)
	}
	if state.Totals != nil {
		s.totals = *state.Totals
	}
	state = w.sustainedFailure(s, state, obj, now)

	desired := applyStatus{
		Conditions: Conditions(state, s.totals, w.unhealthyAfter, obj.Generation, now, s.written.Conditions),
		Delivery:   DeliveryStatus(s.totals, state),
	}
	if sameStatus(desired, s.written) {
		s.failedTicks = 0
		return nil
	}
	return &pendingWrite{s: s, obj: obj, desired: desired}
}

// settle records the outcome of one subscription's write.
func (w *Writer) settle(ctx context.Context, pw *pendingWrite) {
	s, err := pw.s, pw.err
	switch {
	case err == nil:
		w.writes.Add(1)
		s.written = pw.desired
		s.failedTicks = 0
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		// Gone, or replaced by a namesake (the uid no longer matches).
		w.log.Info("Subscription gone before its status was written", "namespace", s.key.Namespace, "name", s.key.Name)
		w.forget(s)
	case ctx.Err() != nil:
		// Leadership lost during the write; the next leader takes over.
	default:
		s.failedTicks++
		w.log.Error("Writing the delivery status failed, retrying on the next tick", "namespace", s.key.Namespace,
			"name", s.key.Name, "error", err, "failedTicks", s.failedTicks)
	}
}

// sustainedFailure suspends a subscription whose every attempt failed for
// its SuspendAfter, and keeps the clock of that stopped while deliveries
// are held and restarted when a suspension for it is lifted.
func (w *Writer) sustainedFailure(s *subscription, state State, obj *hooklinev1.WebhookSubscription, now time.Time) State {
	prev := meta.FindStatusCondition(s.written.Conditions, hooklinev1.ConditionSuspended)
	wasSuspended := prev != nil && prev.Status == metav1.ConditionTrue && prev.Reason == hooklinev1.ReasonSustainedFailure
	switch {
	case wasSuspended && prev.ObservedGeneration == obj.Generation:
		if state.SuspendedReason == "" {
			// Suspended by this writer; the replicas see it from the
			// status (the informer may lag one write behind).
			state.SuspendedReason, state.SuspendedMessage = prev.Reason, prev.Message
		}
	case wasSuspended || (state.SuspendedReason != "" && state.SuspendedReason != hooklinev1.ReasonSustainedFailure):
		// Resumed by a spec change, or held otherwise: failures start a
		// new run when deliveries resume.
		s.totals.FailingSince = time.Time{}
	case state.SuspendedReason == "" && SustainedFailure(s.totals, state.SuspendAfter, now):
		state.SuspendedReason = hooklinev1.ReasonSustainedFailure
		state.SuspendedMessage = fmt.Sprintf("Every delivery attempt failed since %s (longer than spec.delivery.suspendAfter, %s); events are held until the spec changes or spec.suspend is set and cleared",
			formatTime(s.totals.FailingSince), state.SuspendAfter)
		w.log.Warn("Suspending a subscription whose endpoint has failed too long", "namespace", obj.Namespace, "name", obj.Name,
			"failingSince", s.totals.FailingSince)
		w.source.Suspended(obj, state.SuspendedMessage)
	}
	return state
}

func (w *Writer) apply(ctx context.Context, obj *hooklinev1.WebhookSubscription, st applyStatus) error {
	u, err := applyBody(obj, st)
	if err != nil {
		return err
	}
	_, err = w.client.Resource(subscriptionsResource).Namespace(obj.Namespace).ApplyStatus(ctx, obj.Name, u,
		metav1.ApplyOptions{FieldManager: w.fieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("applying the delivery status of WebhookSubscription %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	return nil
}

// forget drops a subscription that is gone.
func (w *Writer) forget(s *subscription) {
	delete(w.subs, s.key)
}
