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

// subscriptions keeps the served subscriptions in step with the cluster:
// informers feed a work queue, and each key is brought to its desired state
// (delivery settings, and a lane when this instance owns the subscription)
// by one goroutine.
type subscriptions struct {
	d     *Dispatcher
	self  string // "namespace/name" of the dispatcher, as subscriptions' status.dispatcher
	queue workqueue.TypedRateLimitingInterface[string]
	refs  *refWatcher

	subInf, wsInf, dispInf cache.SharedIndexInformer
	nsInf                  cache.SharedIndexInformer
	start                  func(stop <-chan struct{}) // starts the informers

	mu     sync.Mutex
	served map[string]*served // by "namespace/name"
	// orphans are checkpoints seen without a subscription at the last
	// garbage collection; they are deleted if still orphaned at the next.
	orphans map[string]bool

	// syncing counts keys being synced, which the work queue no longer
	// lists.
	syncing atomic.Int32

	// tick is what the status writer's current tick reports of the dead
	// letters, read once at its start (see readCounts).
	tick atomic.Pointer[tickSnapshot]
}

// tickSnapshot is read at the start of a status tick: the lanes'
// checkpoints, then the dead letters kept. A lane stores a dead letter
// before its checkpoint counts it, so every dead letter the snapshot's
// totals count is in the counts read after them (unless it has expired
// since): a status never says more were dead-lettered than are kept for
// replay because the two were read at different moments.
type tickSnapshot struct {
	lanes  map[string]laneRecord
	counts *queue.DeadLetterCounts
}

// served is one subscription this instance knows: every instance computes
// how each subscription is served; the one that owns it runs its lane.
type served struct {
	key   report.Key
	token string
	state atomicState
	// lane delivers the subscription's events; nil unless this instance
	// owns it. Guarded by subscriptions.mu.
	lane *lane
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

func newSubscriptions(d *Dispatcher) (*subscriptions, error) {
	s := &subscriptions{
		d:       d,
		self:    d.opts.Namespace + "/" + d.opts.Name,
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		served:  map[string]*served{},
		orphans: map[string]bool{},
	}
	s.refs = newRefWatcher(d.kube, s.refChanged)
	// The informers exist from the start, so that what runs beside the
	// work loop (the status writer) can read them before they are started.
	all := dynamicinformer.NewDynamicSharedInformerFactory(s.d.dyn, 10*time.Minute)
	s.subInf = all.ForResource(subscriptionsGVR).Informer()
	if err := s.subInf.AddIndexers(cache.Indexers{uidIndex: indexByUID}); err != nil {
		return nil, fmt.Errorf("indexing subscriptions by uid: %w", err)
	}
	s.wsInf = all.ForResource(secretsGVR).Informer()
	own := dynamicinformer.NewFilteredDynamicSharedInformerFactory(s.d.dyn, 10*time.Minute, s.d.opts.Namespace,
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.d.opts.Name).String()
		})
	s.dispInf = own.ForResource(dispatchersGVR).Informer()
	nsFactory := informers.NewSharedInformerFactory(s.d.kube, 10*time.Minute)
	s.nsInf = nsFactory.Core().V1().Namespaces().Informer()
	s.start = func(stop <-chan struct{}) {
		all.Start(stop)
		own.Start(stop)
		nsFactory.Start(stop)
	}

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
	return s, nil
}

func (s *subscriptions) run(ctx context.Context) error {
	defer s.queue.ShutDown()
	defer s.refs.stopAll()
	s.start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.subInf.HasSynced, s.wsInf.HasSynced, s.dispInf.HasSynced, s.nsInf.HasSynced) {
		return ctx.Err()
	}
	// The instances already serving keep what they own.
	s.d.countLiveInstances(ctx)
	s.d.log.Info("Watching subscriptions")

	go s.markReadyWhenServed(ctx)
	go s.collectGarbage(ctx)
	go func() {
		<-ctx.Done()
		s.queue.ShutDown()
	}()
	for s.processNext(ctx) {
	}
	s.stopLanes()
	return nil
}

// markReadyWhenServed starts routing and sets the dispatcher ready once
// every subscription known at start has been brought to its desired
// state, so no event is accepted before the lanes that must take it exist.
func (s *subscriptions) markReadyWhenServed(ctx context.Context) {
	for ctx.Err() == nil {
		if s.idle() && s.refs.synced() {
			// Secrets listed since the last pass may have queued work.
			time.Sleep(50 * time.Millisecond)
			if s.idle() {
				if err := s.d.startRouting(ctx); err != nil {
					s.d.log.Error("Starting to route events", "err", err)
					time.Sleep(time.Second)
					continue
				}
				s.d.ready.Store(true)
				// Announce at once rather than at the next renewal.
				select {
				case s.d.becameReady <- struct{}{}:
				default:
				}
				s.d.log.Info("Serving", "subscriptions", len(s.keys()), "lanes", len(s.lanes()))
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
		return s.drop(key)
	}
	s.mu.Lock()
	sv := s.served[key]
	if sv != nil && sv.key.UID != string(obj.UID) {
		// Deleted and created again under the same name: a new lane.
		s.mu.Unlock()
		if err := s.drop(key); err != nil {
			return err
		}
		s.mu.Lock()
		sv = nil
	}
	if sv == nil {
		sv = &served{
			key:   report.Key{Namespace: obj.Namespace, Name: obj.Name, UID: string(obj.UID)},
			token: queue.SubscriptionToken(string(obj.UID)),
		}
		s.served[key] = sv
	}
	l := sv.lane
	s.mu.Unlock()
	sv.decoded.Store(obj)

	rec, recSeq, hasRec := s.d.view.laneAt(sv.token)
	gone := rec.GoneGeneration
	if l != nil {
		gone = l.gone()
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
	sv.state.Store(st)

	switch {
	case !s.owns(sv.key.UID):
		if l != nil {
			s.release(sv, l)
		}
		return nil
	case l != nil:
		l.configure(st)
	default:
		if hasRec && rec.Owner != "" && rec.Owner != s.d.opts.Instance {
			if active, recheck := s.ownerActive(rec.Owner); active {
				// Still served by the instance that claimed it: it lets
				// go once it sees this one, and its last checkpoint wakes
				// this subscription. An instance this one only knows
				// from its checkpoints is looked at again once they
				// would be stale.
				if recheck > 0 {
					s.queue.AddAfter(key, recheck)
				}
				return nil
			}
		}
		if err := s.register(ctx, sv, st, rec, recSeq, hasRec); err != nil {
			return err
		}
	}
	if st.accepted {
		s.replayRequested(ctx, sv, obj)
	}
	return nil
}

// register starts the lane of a subscription this instance takes: from its
// checkpoint when it has one (a restart, or one taken over), from the
// router's position when it is new. It first claims the checkpoint, so
// that of instances that both believe they own the subscription (one has
// not seen the other yet) one serves it.
func (s *subscriptions) register(ctx context.Context, sv *served, st *deliveryState, rec laneRecord, recSeq uint64, hasRec bool) error {
	d := s.d
	var start, catchUp uint64
	pos := d.router.position()
	switch {
	case hasRec && pos == 0:
		// Routing starts from the lowest floor of the lanes registered
		// before it.
		start = rec.Events.Floor
	case hasRec && rec.Events.Floor < pos:
		// Taken over: it reads what it missed itself, then joins the
		// router.
		start, catchUp = rec.Events.Floor, rec.Events.Floor
	default:
		start = pos
	}
	var r *laneRecord
	if hasRec {
		r = &rec
	} else if st.obj.Status.Delivery != nil {
		// Counting goes on from what the status shows.
		r = &laneRecord{Totals: report.TotalsFromStatus(st.obj.Status.Delivery)}
	}
	l := newLane(d.env, sv.key, r, start)
	l.configure(st)
	claim := l.record(d.opts.Instance, max(pos, start))
	if !hasRec {
		recSeq = 0
	}
	seq, err := d.queue.ClaimProgress(ctx, encodeRecord(sv.token, claim), recSeq)
	if errors.Is(err, queue.ErrClaimed) {
		// Another instance serves it; its checkpoints wake this one if it
		// lets go.
		l.stop()
		return nil
	}
	if err != nil {
		l.stop()
		return fmt.Errorf("claiming subscription %s/%s: %w", sv.key.Namespace, sv.key.Name, err)
	}
	d.view.claimed(sv.token, claim, seq)
	s.mu.Lock()
	sv.lane = l
	s.mu.Unlock()
	d.router.add(l)
	d.checkpoints.add(l)
	if catchUp != 0 {
		d.log.Info("Taking a subscription over", "subscription", sv.key.Namespace+"/"+sv.key.Name, "from", catchUp)
		l.mu.Lock()
		l.fallBehind(catchUp)
		l.mu.Unlock()
	}
	return nil
}

// release hands a lane to the instance that owns the subscription now.
func (s *subscriptions) release(sv *served, l *lane) {
	s.mu.Lock()
	if sv.lane == l {
		sv.lane = nil
	}
	s.mu.Unlock()
	s.d.router.remove(l)
	l.stop()
	s.d.checkpoints.release(l)
	s.d.log.Info("Handing a subscription over to another instance", "subscription", sv.key.Namespace+"/"+sv.key.Name)
}

// drop stops serving key: the subscription was deleted or moved to another
// dispatcher, so its checkpoint and backlog go with it.
func (s *subscriptions) drop(key string) error {
	s.mu.Lock()
	sv := s.served[key]
	delete(s.served, key)
	var l *lane
	if sv != nil {
		l, sv.lane = sv.lane, nil
	}
	s.mu.Unlock()
	if sv == nil {
		return nil
	}
	if l != nil {
		s.d.router.remove(l)
		l.stop()
		s.d.checkpoints.drop(l)
	}
	s.refs.release(key, nil)
	s.d.metrics.forget(sv.key.Namespace, sv.key.Name)
	s.d.log.Info("No longer serving a subscription", "subscription", key)
	return nil
}

// owns says whether this instance runs the lane of the subscription with
// uid: with the embedded queue, the only instance does; on an external
// cluster, the live instance that scores highest for the uid.
func (s *subscriptions) owns(uid string) bool {
	if s.d.queue.Embedded() {
		return true
	}
	return ownerOf(uid, s.d.live()) == s.d.opts.Instance
}

// ownerActive says whether an instance named in a checkpoint still serves:
// its Lease is fresh, or, for an instance whose Lease this one has not
// seen yet (both just started), it stored a checkpoint within a Lease's
// duration; recheck is then when that stops being true.
func (s *subscriptions) ownerActive(instance string) (active bool, recheck time.Duration) {
	if s.d.queue.Embedded() {
		return instance == s.d.opts.Instance, 0
	}
	if s.d.live()[instance] {
		return true, 0
	}
	return heardRecently(s.d.view.lastHeard(instance), s.d.opts.Clock.Now(), s.d.opts.LeaseDuration)
}

// heardRecently says whether an instance last heard of at heard is still
// taken as serving at now, and for how much longer.
func heardRecently(heard, now time.Time, lease time.Duration) (bool, time.Duration) {
	if heard.IsZero() {
		return false, 0
	}
	left := heard.Add(lease).Sub(now)
	if left <= 0 {
		return false, 0
	}
	return true, left
}

// yield stops the lane of a subscription another instance claimed since
// this one did, without a last checkpoint: the subscription's checkpoint
// is the other instance's now. The subscription is synced again, to take
// it back if the other instance does not keep it.
func (s *subscriptions) yield(key string, l *lane) {
	s.mu.Lock()
	sv := s.served[key]
	if sv == nil || sv.lane != l {
		s.mu.Unlock()
		return
	}
	sv.lane = nil
	s.mu.Unlock()
	s.d.router.remove(l)
	l.stop()
	s.d.checkpoints.forget(l)
	s.d.log.Info("Another instance claimed a subscription this one served; leaving it", "subscription", key)
	s.queue.Add(key)
}

// lane returns the lane of the subscription key with token, nil when this
// instance runs none.
func (s *subscriptions) lane(key, token string) *lane {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.served[key]; sv != nil && sv.token == token {
		return sv.lane
	}
	return nil
}

// lanes lists the lanes this instance runs.
func (s *subscriptions) lanes() []*lane {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*lane
	for _, sv := range s.served {
		if sv.lane != nil {
			out = append(out, sv.lane)
		}
	}
	return out
}

// exists says whether a subscription token names a subscription of this
// dispatcher.
func (s *subscriptions) exists(token string) bool {
	uid, ok := strings.CutPrefix(token, queue.SubscriptionTokenPrefix)
	if !ok {
		return false
	}
	objs, err := s.subInf.GetIndexer().ByIndex(uidIndex, uid)
	return err == nil && len(objs) > 0
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

// uidIndex indexes the subscription informer by uid.
const uidIndex = "uid"

func indexByUID(o any) ([]string, error) {
	m, err := meta.Accessor(o)
	if err != nil {
		return nil, err
	}
	return []string{string(m.GetUID())}, nil
}

// gone is told by a lane that its endpoint answered 410 Gone at generation.
func (s *subscriptions) gone(key report.Key, _ int64) {
	s.queue.Add(key.Namespace + "/" + key.Name)
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

// reportState is what the status writer needs about one subscription:
// what this instance computed of how it is served, and what the latest
// checkpoint of its lane says about its deliveries. A subscription no lane
// has served at its current generation yet is not reported: it is not
// accepted until its events are routed.
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
	rec, ok := s.d.view.lane(sv.token)
	if !ok || rec.Owner == "" || (st.accepted && rec.Generation != obj.Generation) {
		return report.State{}, false
	}
	var dead uint64
	totals := rec.Totals
	if tick := s.tick.Load(); tick != nil {
		dead = tick.counts.Kept(ns, name)
		if snap, ok := tick.lanes[sv.token]; ok {
			// The totals as they were when the counts were read; a
			// lane new since then has none to be behind.
			totals = snap.Totals
		}
	}
	backlog := rec.Pending + rec.Moved
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
		Totals:           &totals,
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

// readCounts reads every subscription's dead letters from the queue for
// the status writer's tick about to start, after the lanes' checkpoints
// (see tickSnapshot): one request serves all of the tick's lookups. When
// the queue does not answer, the tick reports the last snapshot.
func (s *subscriptions) readCounts(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lanes := s.d.view.snapshot()
	c, err := s.d.queue.DeadLetterCounts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.d.log.Warn("Reading dead letters from the queue", "err", err)
		}
		return
	}
	s.tick.Store(&tickSnapshot{lanes: lanes, counts: c})
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

// stopLanes stops every lane: no delivery starts any more.
func (s *subscriptions) stopLanes() {
	for _, l := range s.lanes() {
		l.stop()
	}
}

// collectGarbage deletes the checkpoints and backlogs of subscriptions
// that are gone (deleted while no instance ran, or while their owner was
// stopped). Only the status leader does it, and only for checkpoints
// orphaned at two passes in a row, so a subscription this instance has not
// seen yet never loses its checkpoint.
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
		orphans := map[string]bool{}
		for _, tok := range s.d.view.tokens() {
			if s.exists(tok) {
				continue
			}
			if !s.orphans[tok] {
				orphans[tok] = true
				continue
			}
			err := s.d.queue.DeleteProgress(ctx, tok)
			if err == nil {
				err = s.d.queue.PurgeBacklog(ctx, tok, 0)
			}
			if err != nil {
				if ctx.Err() == nil {
					s.d.log.Warn("Deleting the checkpoint of a deleted subscription", "token", tok, "err", err)
				}
				orphans[tok] = true
				continue
			}
			s.d.view.forget(tok)
		}
		s.orphans = orphans
	}
}
