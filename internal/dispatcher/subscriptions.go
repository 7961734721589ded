package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/eventtype"
	"github.com/hookline/hookline/internal/filter"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/report"
	"github.com/hookline/hookline/internal/rules"
)

var (
	subscriptionsGVR = hooklinev1.GroupVersion.WithResource("webhooksubscriptions")
	secretsGVR       = hooklinev1.GroupVersion.WithResource("webhooksecrets")
	dispatchersGVR   = hooklinev1.GroupVersion.WithResource("webhookdispatchers")
)

// ackWaitMargin is added to a subscription's timeout for the consumer's ack
// wait, so a delivery in progress is never redelivered to another worker.
const ackWaitMargin = 30 * time.Second

// subscriptions keeps the served subscriptions in step with the cluster:
// informers feed a work queue, and each key is brought to its desired state
// (consumer, delivery settings, worker) by one goroutine.
type subscriptions struct {
	d     *Dispatcher
	self  string // "namespace/name" of the dispatcher, as subscriptions' status.dispatcher
	queue workqueue.TypedRateLimitingInterface[string]
	refs  *refWatcher

	subInf, wsInf, dispInf cache.SharedIndexInformer
	nsInf                  cache.SharedIndexInformer

	mu      sync.Mutex
	served  map[string]*served // by "namespace/name"
	workers sync.WaitGroup
	// orphans are consumers seen without a served subscription at the last
	// garbage collection; they are deleted if still orphaned at the next.
	orphans map[string]bool

	// syncing counts keys being synced, which the work queue no longer
	// lists.
	syncing atomic.Int32

	// tickCounts are the backlogs and dead letters the status writer's
	// current tick reports, read once at its start (see readCounts).
	tickCounts atomic.Pointer[queue.Counts]
}

// served is one subscription this instance serves.
type served struct {
	key      report.Key
	consumer string
	state    atomicState
	cancel   context.CancelFunc // stops its worker; nil when none runs
	running  workerShape
	worker   int // counts workers started, to tell the current one
	// gone records the generation at which the endpoint answered 410.
	goneGeneration int64
	// validation is the endpoint validation handshake, guarded by
	// subscriptions.mu.
	validation *validation
	// lastReplay is the last replay the annotation asked for that this
	// instance made, and replaying is set while one runs; both guarded
	// by subscriptions.mu.
	lastReplay *hooklinev1.ReplayStatus
	replaying  bool
	// decoded is the subscription as last decoded from the informer's
	// object, by a sync or a status lookup; a lookup reuses it while the
	// informer holds the same resourceVersion.
	decoded atomic.Pointer[hooklinev1.WebhookSubscription]
}

// workerShape is what a running worker was started with; a change restarts it.
type workerShape struct {
	concurrency int
}

// deliveryState is everything a delivery needs, computed once per change
// of the subscription or a Secret it uses, never per delivery.
type deliveryState struct {
	obj         *hooklinev1.WebhookSubscription
	generation  int64
	accepted    bool
	reason, msg string
	suspended   string // reason; "" when not suspended
	suspendMsg  string
	patterns    eventtype.Set
	patternList []string
	filter      *filter.Filter
	target      delivery.Target
	policy      delivery.Policy
	concurrency int
	ordered     bool
	limiter     *endpointLimiter
	// suspendAfter is how long every attempt may fail before the status
	// writer suspends the subscription.
	suspendAfter time.Duration
	// tlsIdentity is the TLS material of target.Client, if it has any.
	tlsIdentity delivery.TLSIdentity
	// authFingerprint tells whether target.Auth can be kept on a re-sync.
	authFingerprint string
	// origin is the name the dispatcher gives in the validation
	// handshake; validation is its outcome (nil when none is asked for),
	// and awaitingValidation holds deliveries until it allows them.
	origin             string
	validation         *report.Validation
	awaitingValidation bool
}

type atomicState struct {
	mu sync.RWMutex
	s  *deliveryState
}

func (a *atomicState) Load() *deliveryState {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.s
}

func (a *atomicState) Store(s *deliveryState) {
	a.mu.Lock()
	a.s = s
	a.mu.Unlock()
}

func newSubscriptions(d *Dispatcher) *subscriptions {
	s := &subscriptions{
		d:       d,
		self:    d.opts.Namespace + "/" + d.opts.Name,
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		served:  map[string]*served{},
		orphans: map[string]bool{},
	}
	s.refs = newRefWatcher(d.kube, s.refChanged)
	return s
}

func (s *subscriptions) run(ctx context.Context) error {
	defer s.queue.ShutDown()
	defer s.refs.stopAll()
	all := dynamicinformer.NewDynamicSharedInformerFactory(s.d.dyn, 10*time.Minute)
	s.subInf = all.ForResource(subscriptionsGVR).Informer()
	s.wsInf = all.ForResource(secretsGVR).Informer()
	own := dynamicinformer.NewFilteredDynamicSharedInformerFactory(s.d.dyn, 10*time.Minute, s.d.opts.Namespace,
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.d.opts.Name).String()
		})
	s.dispInf = own.ForResource(dispatchersGVR).Informer()
	nsFactory := informers.NewSharedInformerFactory(s.d.kube, 10*time.Minute)
	s.nsInf = nsFactory.Core().V1().Namespaces().Informer()

	_, _ = s.subInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueueObj,
		UpdateFunc: func(_, n any) { s.enqueueObj(n) },
		DeleteFunc: s.enqueueObj,
	})
	all4 := func(any) { s.enqueueAll() }
	_, _ = s.dispInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: all4, UpdateFunc: func(_, n any) { all4(n) }, DeleteFunc: all4})
	_, _ = s.wsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.webhookSecretChanged,
		UpdateFunc: func(_, n any) { s.webhookSecretChanged(n) },
		DeleteFunc: s.webhookSecretChanged,
	})
	_, _ = s.nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, n any) {
			if ns, ok := n.(*corev1.Namespace); ok {
				s.enqueueNamespace(ns.Name)
			}
		},
	})
	all.Start(ctx.Done())
	own.Start(ctx.Done())
	nsFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.subInf.HasSynced, s.wsInf.HasSynced, s.dispInf.HasSynced, s.nsInf.HasSynced) {
		return ctx.Err()
	}
	s.d.log.Info("Watching subscriptions")

	go s.markReadyWhenServed(ctx)
	go s.collectGarbage(ctx)
	go func() {
		<-ctx.Done()
		s.queue.ShutDown()
	}()
	for s.processNext(ctx) {
	}
	s.stopWorkers()
	return nil
}

// markReadyWhenServed sets the dispatcher ready once every subscription
// known at start has been brought to its desired state, so no event is
// accepted before the consumers that must retain it exist.
func (s *subscriptions) markReadyWhenServed(ctx context.Context) {
	for ctx.Err() == nil {
		if s.idle() && s.refs.synced() {
			// Secrets listed since the last pass may have queued work.
			time.Sleep(50 * time.Millisecond)
			if s.idle() {
				s.d.ready.Store(true)
				// Announce at once rather than at the next renewal.
				select {
				case s.d.becameReady <- struct{}{}:
				default:
				}
				s.d.log.Info("Serving", "subscriptions", len(s.keys()))
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// idle says whether no subscription waits to be, or is being, brought to
// its desired state.
func (s *subscriptions) idle() bool { return s.queue.Len() == 0 && s.syncing.Load() == 0 }

func (s *subscriptions) processNext(ctx context.Context) bool {
	key, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	s.syncing.Add(1)
	defer s.syncing.Add(-1)
	defer s.queue.Done(key)
	if err := s.sync(ctx, key); err != nil {
		if ctx.Err() != nil {
			return false
		}
		s.d.log.Error("Serving a subscription", "subscription", key, "err", err)
		s.queue.AddRateLimited(key)
		return true
	}
	s.queue.Forget(key)
	return true
}

func (s *subscriptions) enqueueObj(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	if m, err := meta.Accessor(o); err == nil {
		s.queue.Add(m.GetNamespace() + "/" + m.GetName())
	}
}

func (s *subscriptions) enqueueAll() {
	for _, o := range s.subInf.GetStore().List() {
		s.enqueueObj(o)
	}
}

func (s *subscriptions) enqueueNamespace(ns string) {
	for _, o := range s.subInf.GetStore().List() {
		if m, err := meta.Accessor(o); err == nil && m.GetNamespace() == ns {
			s.enqueueObj(o)
		}
	}
}

// webhookSecretChanged wakes the subscriptions signing with a WebhookSecret.
func (s *subscriptions) webhookSecretChanged(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	m, err := meta.Accessor(o)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, sv := range s.served {
		if st := sv.state.Load(); st != nil && st.obj.Namespace == m.GetNamespace() && st.obj.Spec.Signing.SecretRef.Name == m.GetName() {
			s.queue.Add(key)
		}
	}
}

// refChanged wakes the subscriptions using a Secret or ConfigMap.
func (s *subscriptions) refChanged(key refKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, sv := range s.served {
		if st := sv.state.Load(); st != nil && st.obj.Namespace == key.Namespace {
			s.queue.Add(k)
		}
	}
}

// sync brings one subscription to its desired state.
func (s *subscriptions) sync(ctx context.Context, key string) error {
	obj, err := s.subscription(key)
	if err != nil {
		return err
	}
	if obj == nil || obj.DeletionTimestamp != nil || obj.Status.Dispatcher != s.self {
		return s.drop(ctx, key)
	}
	s.mu.Lock()
	sv := s.served[key]
	if sv != nil && sv.key.UID != string(obj.UID) {
		// Deleted and created again under the same name: a new consumer.
		s.mu.Unlock()
		if err := s.drop(ctx, key); err != nil {
			return err
		}
		s.mu.Lock()
		sv = nil
	}
	if sv == nil {
		sv = &served{
			key:      report.Key{Namespace: obj.Namespace, Name: obj.Name, UID: string(obj.UID)},
			consumer: "sub-" + string(obj.UID),
		}
		s.served[key] = sv
	}
	gone := sv.goneGeneration
	s.mu.Unlock()
	sv.decoded.Store(obj)
	// Another instance may have met the 410; it recorded it on the
	// consumer they share.
	shared, err := s.d.queue.GoneGeneration(ctx, sv.consumer)
	if err != nil {
		return fmt.Errorf("reading the queue consumer of %s: %w", key, err)
	}
	if shared == obj.Generation && gone != shared {
		s.mu.Lock()
		sv.goneGeneration = shared
		s.mu.Unlock()
		gone = shared
	}

	prev := sv.state.Load()
	st := s.desired(ctx, obj, gone, prev)
	var allowedRate float64
	if st.accepted && st.patternList != nil {
		allowedRate = s.validate(ctx, sv, st)
	}
	st.limiter = newEndpointLimiter(s.d.opts.Clock, obj.Spec.Delivery.RateLimit, allowedRate, st.concurrency, int(s.d.instances.Load()))
	if prev != nil && prev.limiter != nil && prev.limiter.sameConfig(st.limiter) {
		st.limiter = prev.limiter
	}
	hold := !st.accepted || st.suspended != "" || st.awaitingValidation
	if st.patternList == nil {
		// Patterns that do not compile (possible only where admission did
		// not check them) cannot filter a consumer: none is made, and the
		// subscription is reported not accepted.
		sv.state.Store(st)
		s.mu.Lock()
		defer s.mu.Unlock()
		if sv.cancel != nil {
			sv.cancel()
			sv.cancel = nil
		}
		return nil
	}
	if err := s.d.queue.EnsureConsumer(ctx, queue.ConsumerSpec{
		Name:          sv.consumer,
		Namespace:     obj.Namespace,
		Patterns:      st.patternList,
		MaxAckPending: st.concurrency,
		AckWait:       st.target.Timeout + ackWaitMargin,
		Paused:        hold,
		Gone:          st.suspended == hooklinev1.ReasonEndpointGone,
		Generation:    obj.Generation,
	}); err != nil {
		return fmt.Errorf("preparing the queue consumer of %s: %w", key, err)
	}
	sv.state.Store(st)
	if st.accepted {
		s.replayRequested(ctx, sv, obj)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	shape := workerShape{concurrency: st.concurrency}
	switch {
	case hold && sv.cancel != nil:
		sv.cancel()
		sv.cancel = nil
	case !hold && (sv.cancel == nil || sv.running != shape):
		if sv.cancel != nil {
			sv.cancel()
		}
		sv.running = shape
		sv.cancel = s.startWorker(ctx, sv, st.concurrency)
	}
	return nil
}

// drop stops serving key and deletes its consumer: the subscription was
// deleted or moved to another dispatcher, so its backlog goes with it.
func (s *subscriptions) drop(ctx context.Context, key string) error {
	s.mu.Lock()
	sv := s.served[key]
	delete(s.served, key)
	if sv != nil && sv.cancel != nil {
		sv.cancel()
	}
	s.mu.Unlock()
	if sv == nil {
		return nil
	}
	s.refs.release(key, nil)
	s.d.metrics.forget(sv.key.Namespace, sv.key.Name)
	s.d.deadLetterEvents.Delete(sv.key)
	if err := s.d.queue.DeleteConsumer(ctx, sv.consumer); err != nil {
		return fmt.Errorf("deleting the queue consumer of %s: %w", key, err)
	}
	s.d.log.Info("No longer serving a subscription", "subscription", key)
	return nil
}

func (s *subscriptions) subscription(key string) (*hooklinev1.WebhookSubscription, error) {
	o, ok, err := s.subInf.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil, err
	}
	sub := &hooklinev1.WebhookSubscription{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.(*unstructured.Unstructured).UnstructuredContent(), sub); err != nil {
		return nil, fmt.Errorf("decoding subscription %s: %w", key, err)
	}
	return sub, nil
}

func (s *subscriptions) dispatcher() (*hooklinev1.WebhookDispatcher, error) {
	o, ok, err := s.dispInf.GetStore().GetByKey(s.self)
	if err != nil || !ok {
		return nil, err
	}
	d := &hooklinev1.WebhookDispatcher{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.(*unstructured.Unstructured).UnstructuredContent(), d); err != nil {
		return nil, fmt.Errorf("decoding dispatcher %s: %w", s.self, err)
	}
	return d, nil
}

func (s *subscriptions) webhookSecret(ns, name string) (*hooklinev1.WebhookSecret, error) {
	o, ok, err := s.wsInf.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil, err
	}
	ws := &hooklinev1.WebhookSecret{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.(*unstructured.Unstructured).UnstructuredContent(), ws); err != nil {
		return nil, fmt.Errorf("decoding WebhookSecret %s/%s: %w", ns, name, err)
	}
	return ws, nil
}

// desired computes how a subscription is served now. A subscription that
// cannot be served is still returned, not accepted, with the reason: its
// events are held in the queue until it can be.
func (s *subscriptions) desired(ctx context.Context, sub *hooklinev1.WebhookSubscription, goneGeneration int64, prev *deliveryState) *deliveryState {
	key := sub.Namespace + "/" + sub.Name
	spec := &sub.Spec
	st := &deliveryState{obj: sub, generation: sub.Generation, accepted: true, reason: hooklinev1.ReasonAccepted,
		msg: "Served by " + s.self + " instance " + s.d.opts.Instance, patternList: spec.EventTypes}
	st.target.URL = spec.URL
	st.target.Timeout = durationOr(spec.Delivery.Timeout, 15*time.Second)
	st.policy = delivery.Policy{
		MaxAttempts:    int(spec.Delivery.Retry.MaxAttempts),
		MaxAge:         durationOr(spec.Delivery.Retry.MaxAge, 0),
		InitialBackoff: durationOr(spec.Delivery.Retry.InitialBackoff, 0),
		MaxBackoff:     durationOr(spec.Delivery.Retry.MaxBackoff, 0),
	}
	st.suspendAfter = durationOr(spec.Delivery.SuspendAfter, defaultSuspendAfter)
	st.concurrency = int(spec.Delivery.Concurrency)
	if st.concurrency <= 0 {
		st.concurrency = 10
	}
	if spec.Delivery.Ordering == hooklinev1.OrderingOrdered {
		// One delivery in flight across every instance: the next event
		// waits until the previous one is acknowledged or dead-lettered.
		st.ordered, st.concurrency = true, 1
	}
	switch {
	case spec.Suspend:
		st.suspended, st.suspendMsg = hooklinev1.ReasonSuspendedBySpec, "Suspended by spec.suspend; events are held until it is cleared"
	case goneGeneration == sub.Generation:
		st.suspended, st.suspendMsg = hooklinev1.ReasonEndpointGone, goneMessage
	default:
		// Suspensions the status writer recorded for the current spec
		// outlive a restart and hold every instance.
		if c := heldByStatus(sub); c != nil {
			st.suspended, st.suspendMsg = c.Reason, c.Message
		}
	}
	refuse := func(reason, format string, args ...any) *deliveryState {
		st.accepted, st.reason, st.msg = false, reason, fmt.Sprintf(format, args...)
		return st
	}
	used := map[refKey]bool{}
	defer func() { s.refs.release(key, used) }()

	var err error
	if len(spec.EventTypes) == 0 {
		err = errors.New("at least one pattern is required")
	} else {
		st.patterns, err = eventtype.CompileSet(spec.EventTypes)
	}
	if err != nil {
		st.patternList = nil
		return refuse(hooklinev1.ReasonInvalidSpec, "spec.eventTypes: %v", err)
	}
	// The rules the controller and the admission webhook apply too.
	if r := rules.SpecRefusal(rules.ValidateSpec(spec)); r != nil {
		return refuse(r.Reason, "%s", r.Message)
	}
	d, err := s.dispatcher()
	if err != nil || d == nil {
		return refuse(hooklinev1.ReasonDispatcherNotFound, "Dispatcher %s is not readable by its own instance", s.self)
	}
	var nsLabels map[string]string
	if o, ok, _ := s.nsInf.GetStore().GetByKey(sub.Namespace); ok {
		nsLabels = o.(*corev1.Namespace).Labels
	}
	policy, err := s.d.egress.update(d.Spec.Egress)
	if err != nil {
		return refuse(hooklinev1.ReasonInvalidSpec, "Dispatcher %s %v", s.self, err)
	}
	admits, admitErr := d.AdmitsNamespace(sub.Namespace, nsLabels)
	if r := rules.CheckDispatcher(sub.Namespace, spec, rules.Dispatcher{Key: s.self, Admits: admits, AdmitErr: admitErr,
		AllowPlainHTTP: d.Spec.Egress.AllowPlainHTTP, CheckURL: policy.CheckURL}); r != nil {
		return refuse(r.Reason, "%s", r.Message)
	}
	if spec.Filter != "" {
		// Compiled once per generation: the subscription is synced again
		// on every status write, and a spec change makes a new generation.
		if prev != nil && prev.filter != nil && prev.generation == sub.Generation && prev.filter.String() == spec.Filter {
			st.filter = prev.filter
		} else if f, ferr := rules.ValidateFilter(spec.Filter); ferr != nil {
			r := rules.FilterRefusal(ferr)
			return refuse(r.Reason, "%s", r.Message)
		} else {
			st.filter = f
		}
	}
	ws, err := s.webhookSecret(sub.Namespace, spec.Signing.SecretRef.Name)
	if err != nil || ws == nil {
		return refuse(hooklinev1.ReasonSecretNotReady, "WebhookSecret %s not found", spec.Signing.SecretRef.Name)
	}
	secretKey := types.NamespacedName{Namespace: sub.Namespace, Name: ws.SigningSecretName()}
	used[refKey{kindSecret, secretKey}] = true
	secret := s.refs.secret(ctx, secretKey, key)
	if secret == nil {
		return refuse(hooklinev1.ReasonSecretNotReady, "Secret %s of WebhookSecret %s not found", secretKey.Name, ws.Name)
	}
	if st.target.Keys, err = signingKeys(secret, s.d.opts.Clock.Now()); err != nil {
		return refuse(hooklinev1.ReasonSecretNotReady, "WebhookSecret %s: %v", ws.Name, err)
	}

	r := refs{s: s, ctx: ctx, sub: sub, used: used, user: key}
	st.target.Header = http.Header{}
	for i, h := range spec.Headers {
		switch {
		case h.Value != nil:
			st.target.Header.Add(h.Name, *h.Value)
		case h.ValueFrom != nil:
			ref := h.ValueFrom.SecretKeyRef
			field := fmt.Sprintf("spec.headers[%d].valueFrom.secretKeyRef", i)
			v, bad := r.secretKey(field, ref.Name, ref.Key)
			if bad != nil {
				return refuse(bad.reason, "%s", bad.msg)
			}
			value := strings.TrimSpace(string(v))
			if err := rules.ValidateHeaderValue(value); err != nil {
				bad := rules.InvalidReferencedValue(rules.Reference{Kind: rules.KindSecret, Name: ref.Name, Field: field}, ref.Key, err)
				return refuse(bad.Reason, "%s", bad.Message)
			}
			st.target.Header.Add(h.Name, value)
		}
	}

	id, bad := r.tlsIdentity(spec.TLS)
	if bad != nil {
		return refuse(bad.reason, "%s", bad.msg)
	}
	client := s.d.sender.Client
	if len(id.CABundle) > 0 || len(id.ClientCertificate) > 0 {
		if client, err = s.d.clients.Get(id); err != nil {
			return refuse(hooklinev1.ReasonInvalidSpec, "spec.tls: %v", err)
		}
		st.target.Client, st.tlsIdentity = client, id
	}
	if st.target.Auth, st.authFingerprint, bad = r.authenticator(spec.Auth, client, prev); bad != nil {
		return refuse(bad.reason, "%s", bad.msg)
	}
	st.origin = s.origin(d)
	return st
}

// defaultSuspendAfter is spec.delivery.suspendAfter's default: as long as
// the longest-retrying hosted webhook services keep trying.
const defaultSuspendAfter = 5 * 24 * time.Hour

const goneMessage = "The endpoint answered 410 Gone; events are held until the subscription's spec changes or spec.suspend is set and cleared"

// heldByStatus returns the Suspended condition of the subscription's status,
// as the dispatcher last wrote it, when it holds the subscription for its
// current spec after a 410 or sustained failure; nil otherwise.
func heldByStatus(sub *hooklinev1.WebhookSubscription) *metav1.Condition {
	c := meta.FindStatusCondition(sub.Status.Conditions, hooklinev1.ConditionSuspended)
	if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != sub.Generation {
		return nil
	}
	if c.Reason != hooklinev1.ReasonEndpointGone && c.Reason != hooklinev1.ReasonSustainedFailure {
		return nil
	}
	return c
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil || d.Duration <= 0 {
		return def
	}
	return d.Duration
}

// suspendGone marks a subscription suspended after a 410 and stops its
// worker; the message stays in the queue.
func (s *subscriptions) suspendGone(sv *served, generation int64) bool {
	s.mu.Lock()
	first := sv.goneGeneration != generation
	sv.goneGeneration = generation
	s.mu.Unlock()
	if first {
		s.queue.Add(sv.key.Namespace + "/" + sv.key.Name)
	}
	return first
}

// keys lists the served subscriptions.
func (s *subscriptions) keys() []report.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]report.Key, 0, len(s.served))
	for _, sv := range s.served {
		out = append(out, sv.key)
	}
	return out
}

// reportState is what the status writer needs about one subscription.
func (s *subscriptions) reportState(ns, name string) (report.State, bool) {
	key := ns + "/" + name
	s.mu.Lock()
	sv := s.served[key]
	s.mu.Unlock()
	if sv == nil {
		return report.State{}, false
	}
	st := sv.state.Load()
	if st == nil {
		return report.State{}, false
	}
	// The status the writer compares with must be the latest the API
	// server returned, which the informer may hold before the
	// subscription is synced again.
	obj, err := s.latest(sv, key)
	if err != nil || obj == nil {
		return report.State{}, false
	}
	var backlog int64
	var dead uint64
	if counts := s.tickCounts.Load(); counts != nil {
		backlog, dead = counts.Backlog(sv.consumer), counts.DeadLettered(ns, name)
	}
	s.d.metrics.backlog.WithLabelValues(ns, name).Set(float64(backlog))
	s.d.metrics.deadLettered.WithLabelValues(ns, name).Set(float64(dead))
	return report.State{
		Object:           obj,
		Accepted:         st.accepted,
		AcceptedReason:   st.reason,
		AcceptedMessage:  st.msg,
		SuspendedReason:  st.suspended,
		SuspendedMessage: st.suspendMsg,
		Backlog:          backlog,
		DeadLettered:     int64(dead),
		SuspendAfter:     st.suspendAfter,
		Validation:       st.validation,
		LastReplay:       s.lastReplay(sv, obj),
	}, true
}

// latest returns the subscription as the informer holds it now, nil when
// it holds none. Converting the informer's object costs more than the
// rest of a status lookup together, so the object decoded last (by the
// last sync, usually) is reused while the informer's has the same
// resourceVersion: the API server gives every change a new one.
func (s *subscriptions) latest(sv *served, key string) (*hooklinev1.WebhookSubscription, error) {
	o, ok, err := s.subInf.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil, err
	}
	u, isU := o.(*unstructured.Unstructured)
	if !isU {
		return nil, fmt.Errorf("decoding subscription %s: unexpected %T in the informer", key, o)
	}
	if obj := sv.decoded.Load(); obj != nil && obj.ResourceVersion == u.GetResourceVersion() && obj.UID == u.GetUID() {
		return obj, nil
	}
	obj := &hooklinev1.WebhookSubscription{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), obj); err != nil {
		return nil, fmt.Errorf("decoding subscription %s: %w", key, err)
	}
	sv.decoded.Store(obj)
	return obj, nil
}

// readCounts reads every subscription's backlog and dead letters from the
// queue for the status writer's tick about to start: one paged listing of
// the consumers serves all of the tick's lookups, however long its writes
// take. When the queue does not answer, the tick reports the last counts
// read.
func (s *subscriptions) readCounts(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := s.d.queue.Counts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.d.log.Warn("Reading backlogs and dead letters from the queue", "err", err)
		}
		return
	}
	s.tickCounts.Store(c)
}

// servedState returns a served subscription and its delivery state, nil
// when it is not served.
func (s *subscriptions) servedState(ns, name string) (*served, *deliveryState) {
	s.mu.Lock()
	sv := s.served[ns+"/"+name]
	s.mu.Unlock()
	if sv == nil {
		return nil, nil
	}
	return sv, sv.state.Load()
}

// lastReplay is the replay the status records: the one this instance made,
// else the one written before.
func (s *subscriptions) lastReplay(sv *served, obj *hooklinev1.WebhookSubscription) *hooklinev1.ReplayStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv.lastReplay != nil {
		return sv.lastReplay
	}
	if obj.Status.Delivery != nil {
		return obj.Status.Delivery.LastReplay
	}
	return nil
}

// retainClients lets go of the HTTP clients of TLS identities no served
// subscription uses any more.
func (s *subscriptions) retainClients() {
	s.mu.Lock()
	var keep []delivery.TLSIdentity
	for _, sv := range s.served {
		if st := sv.state.Load(); st != nil && st.target.Client != nil {
			keep = append(keep, st.tlsIdentity)
		}
	}
	s.mu.Unlock()
	s.d.clients.Retain(keep...)
}

// setInstances shares every served subscription's rate limit among n
// instances.
func (s *subscriptions) setInstances(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sv := range s.served {
		if st := sv.state.Load(); st != nil && st.limiter != nil {
			st.limiter.setInstances(n)
		}
	}
}

func (s *subscriptions) stopWorkers() {
	s.mu.Lock()
	for _, sv := range s.served {
		if sv.cancel != nil {
			sv.cancel()
			sv.cancel = nil
		}
	}
	s.mu.Unlock()
}

// waitWorkers waits for every worker to return, or for ctx; it reports
// whether they all did.
func (s *subscriptions) waitWorkers(ctx context.Context) bool {
	done := make(chan struct{})
	go func() { s.workers.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// collectGarbage deletes consumers of subscriptions nobody serves any more
// (deleted while no instance ran). Only the status leader does it, and
// only for consumers orphaned at two passes in a row, so a subscription
// this instance has not seen yet never loses its consumer.
func (s *subscriptions) collectGarbage(ctx context.Context) {
	t := s.d.opts.Clock.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		s.retainClients()
		if !s.d.leading.Load() {
			continue
		}
		names, err := s.d.queue.ConsumerNames(ctx)
		if err != nil {
			s.d.log.Warn("Listing queue consumers", "err", err)
			continue
		}
		live := map[string]bool{}
		for _, o := range s.subInf.GetStore().List() {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			if d, _, _ := unstructured.NestedString(u.Object, "status", "dispatcher"); d == s.self {
				live["sub-"+string(u.GetUID())] = true
			}
		}
		orphans := map[string]bool{}
		for _, n := range names {
			if live[n] {
				continue
			}
			if s.orphans[n] {
				if err := s.d.queue.DeleteConsumer(ctx, n); err != nil && !errors.Is(err, context.Canceled) {
					s.d.log.Warn("Deleting an orphaned queue consumer", "consumer", n, "err", err)
				}
				continue
			}
			orphans[n] = true
		}
		s.orphans = orphans
	}
}
