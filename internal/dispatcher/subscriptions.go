package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/eventtype"
	"github.com/hookline/hookline/internal/filter"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/report"
)

// subscriptions keeps the served subscriptions in step with the cluster:
// the store's informers feed a work queue, and each key is brought to its
// desired state (delivery settings, and a lane when this instance owns the
// subscription) by one goroutine.
type subscriptions struct {
	subscriptionDeps
	work workqueue.TypedRateLimitingInterface[string]
	refs *refWatcher

	mu     sync.Mutex
	served map[string]*served // by "namespace/name"

	// syncing counts keys being synced, which the work queue no longer
	// lists.
	syncing atomic.Int32
}

// subscriptionDeps are what serving subscriptions takes, handed over when
// the dispatcher is built.
type subscriptionDeps struct {
	// instance names this instance.
	instance string
	log      *slog.Logger
	clock    Clock
	// kube reads the Secrets and ConfigMaps subscriptions reference.
	kube      kubernetes.Interface
	store     *store
	instances *instances
	queue     *queue.Queue
	view      *progressView
	// env is what every lane shares.
	env         *laneEnv
	router      *router
	checkpoints *checkpointer
	orphans     *orphanCollector
	metrics     *metrics
	// sender delivers with the shared client; clients hold one client per
	// TLS identity; egress is the dispatcher's egress policy.
	sender  *delivery.Sender
	clients *delivery.Clients
	egress  *egressConfig
	// leading says whether this instance writes status, and so handles
	// the replay annotation and collects orphans.
	leading func() bool
	// events is the dispatcher's event recorder, which exists once it runs.
	events func() events.EventRecorder
	// serving is called once every subscription known at start has been
	// brought to its desired state, to start routing events and accept
	// them; when it fails it is called again later.
	serving func(ctx context.Context) error
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

func newSubscriptions(deps subscriptionDeps) *subscriptions {
	s := &subscriptions{
		subscriptionDeps: deps,
		work:             workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		served:           map[string]*served{},
	}
	s.refs = newRefWatcher(deps.kube, s.refChanged)
	s.store.handle(storeHandlers{
		subscription:  s.work.Add,
		dispatcher:    s.enqueueAll,
		webhookSecret: s.webhookSecretChanged,
		namespace:     s.enqueueNamespace,
	})
	return s
}

func (s *subscriptions) run(ctx context.Context) error {
	defer s.work.ShutDown()
	defer s.refs.stopAll()
	if !s.store.run(ctx) {
		return ctx.Err()
	}
	// The instances already serving keep what they own.
	s.refreshInstances(ctx)
	s.log.Info("Watching subscriptions")

	go s.markReadyWhenServed(ctx)
	go s.housekeeping(ctx)
	go func() {
		<-ctx.Done()
		s.work.ShutDown()
	}()
	for s.processNext(ctx) {
	}
	s.stopLanes()
	return nil
}

// markReadyWhenServed tells the dispatcher it serves once every
// subscription known at start has been brought to its desired state, so no
// event is accepted before the lanes that must take it exist. The work
// queue must be idle at two looks in a row: Secrets listed since the first
// may have queued work.
func (s *subscriptions) markReadyWhenServed(ctx context.Context) {
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		wasIdle := false
		if err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
			idle := s.idle() && s.refs.synced()
			settled := idle && wasIdle
			wasIdle = idle
			return settled, nil
		}); err != nil {
			return false, err
		}
		if err := s.serving(ctx); err != nil {
			s.log.Error("Starting to route events", "err", err)
			return false, nil
		}
		return true, nil
	})
	if err == nil {
		s.log.Info("Serving", "subscriptions", len(s.keys()), "lanes", len(s.lanes()))
	}
}

// refreshInstances reads the live instances again: rate limits are shared
// among them, and subscriptions move to the instances that own them now.
func (s *subscriptions) refreshInstances(ctx context.Context) {
	changed := s.instances.refresh(ctx)
	if changed.count {
		s.setInstances(s.instances.n())
	}
	if changed.live {
		s.enqueueAll()
	}
}

// housekeeping lets go, every minute, of the HTTP clients no subscription
// uses any more; on the status leader, it collects the checkpoints of
// subscriptions that are gone.
func (s *subscriptions) housekeeping(ctx context.Context) {
	onTicks(ctx, s.clock, time.Minute, func() {
		s.retainClients()
		if s.leading() {
			s.orphans.collect(ctx)
		}
	})
}

// wake brings a subscription to its desired state again.
func (s *subscriptions) wake(key string) { s.work.Add(key) }

// idle says whether no subscription waits to be, or is being, brought to
// its desired state.
func (s *subscriptions) idle() bool { return s.work.Len() == 0 && s.syncing.Load() == 0 }

func (s *subscriptions) processNext(ctx context.Context) bool {
	key, shutdown := s.work.Get()
	if shutdown {
		return false
	}
	s.syncing.Add(1)
	defer s.syncing.Add(-1)
	defer s.work.Done(key)
	if err := s.sync(ctx, key); err != nil {
		if ctx.Err() != nil {
			return false
		}
		s.log.Error("Serving a subscription", "subscription", key, "err", err)
		s.work.AddRateLimited(key)
		return true
	}
	s.work.Forget(key)
	return true
}

// enqueueAll brings every subscription to its desired state again.
func (s *subscriptions) enqueueAll() {
	for _, key := range s.store.subscriptionKeys("") {
		s.work.Add(key)
	}
}

// enqueueNamespace brings the subscriptions of a namespace to their
// desired state again: the dispatcher's namespace selector may admit them
// no longer, or now.
func (s *subscriptions) enqueueNamespace(ns string) {
	for _, key := range s.store.subscriptionKeys(ns) {
		s.work.Add(key)
	}
}

// webhookSecretChanged wakes the subscriptions signing with a WebhookSecret.
func (s *subscriptions) webhookSecretChanged(ns, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, sv := range s.served {
		if st := sv.state.Load(); st != nil && st.obj.Namespace == ns && st.obj.Spec.Signing.SecretRef.Name == name {
			s.work.Add(key)
		}
	}
}

// refChanged wakes the subscriptions using a Secret or ConfigMap.
func (s *subscriptions) refChanged(key refKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, sv := range s.served {
		if st := sv.state.Load(); st != nil && st.obj.Namespace == key.Namespace {
			s.work.Add(k)
		}
	}
}

// sync brings one subscription to its desired state.
func (s *subscriptions) sync(ctx context.Context, key string) error {
	obj, err := s.store.subscription(key)
	if err != nil {
		return err
	}
	if obj == nil || obj.DeletionTimestamp != nil || obj.Status.Dispatcher != s.store.self {
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

	rec, recSeq, hasRec := s.view.laneAt(sv.token)
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
	st.limiter = newEndpointLimiter(s.clock, obj.Spec.Delivery.RateLimit, allowedRate, st.concurrency, s.instances.n())
	if prev != nil && prev.limiter != nil && prev.limiter.sameConfig(st.limiter) {
		st.limiter = prev.limiter
	}
	sv.state.Store(st)

	switch {
	case !s.instances.owns(sv.key.UID):
		if l != nil {
			s.release(sv, l)
		}
		return nil
	case l != nil:
		l.configure(st)
	default:
		if hasRec && rec.Owner != "" && rec.Owner != s.instance {
			if active, recheck := s.instances.active(rec.Owner, s.view.lastHeard(rec.Owner)); active {
				// Still served by the instance that claimed it: it lets
				// go once it sees this one, and its last checkpoint wakes
				// this subscription. An instance this one only knows
				// from its checkpoints is looked at again once they
				// would be stale.
				if recheck > 0 {
					s.work.AddAfter(key, recheck)
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
	var start, catchUp uint64
	pos := s.router.position()
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
	l := newLane(s.env, sv.key, r, start)
	l.configure(st)
	claim := l.record(s.instance, max(pos, start))
	if !hasRec {
		recSeq = 0
	}
	seq, err := s.queue.ClaimProgress(ctx, encodeRecord(sv.token, claim), recSeq)
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
	s.view.claimed(sv.token, claim, seq)
	s.mu.Lock()
	sv.lane = l
	s.mu.Unlock()
	s.router.add(l)
	s.checkpoints.add(l)
	if catchUp != 0 {
		s.log.Info("Taking a subscription over", "subscription", sv.key.Namespace+"/"+sv.key.Name, "from", catchUp)
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
	s.router.remove(l)
	l.stop()
	s.checkpoints.release(l)
	s.log.Info("Handing a subscription over to another instance", "subscription", sv.key.Namespace+"/"+sv.key.Name)
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
		s.router.remove(l)
		l.stop()
		s.checkpoints.drop(l)
	}
	s.refs.release(key, nil)
	s.metrics.forget(sv.key.Namespace, sv.key.Name)
	s.log.Info("No longer serving a subscription", "subscription", key)
	return nil
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
	s.router.remove(l)
	l.stop()
	s.checkpoints.forget(l)
	s.log.Info("Another instance claimed a subscription this one served; leaving it", "subscription", key)
	s.work.Add(key)
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

// gone is told by a lane that its endpoint answered 410 Gone at generation.
func (s *subscriptions) gone(key report.Key, _ int64) {
	s.work.Add(key.Namespace + "/" + key.Name)
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
	s.clients.Retain(keep...)
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
