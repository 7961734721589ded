// Package dispatcher runs one WebhookDispatcher's data plane: it serves the
// subscriptions attached to it from the cluster's state, accepts events on
// the ingest API into the durable queue, delivers them signed to every
// matching endpoint, and reports delivery health back into the
// subscriptions' status. It holds no controller code: the cluster is read
// through client-go informers and written with server-side apply.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/ingest"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/report"
)

// FieldManager is the dispatcher's server-side apply field manager. It owns
// the subscription's Accepted, EndpointHealthy and Suspended conditions and
// its delivery block; the controller owns the rest.
const FieldManager = "hookline-dispatcher"

// Options configure a Dispatcher.
type Options struct {
	// Namespace and Name of the WebhookDispatcher served.
	Namespace, Name string
	// Instance names this process among the dispatcher's instances (the
	// pod name in a cluster). It must be unique per dispatcher.
	Instance string
	// Kube is the connection to the API server.
	Kube *rest.Config
	// Queue is the opened durable queue.
	Queue *queue.Queue
	// Authorizer checks producers; nil disables authentication.
	Authorizer ingest.Authorizer

	// IngestAddr, HealthAddr and MetricsAddr are listen addresses; ":0"
	// picks a free port (see the Addr methods), "" disables the server
	// (never the ingest one).
	IngestAddr, HealthAddr, MetricsAddr string
	// AdvertiseIngestURL, when set, is announced on the instance Lease
	// (annotation hookline.dev/ingest-url) as where clients outside the
	// cluster reach the ingest API.
	AdvertiseIngestURL string

	MaxEventBytes  int64         // default 1 MiB
	StatusInterval time.Duration // default 10s
	// LeaseDuration is how long an instance Lease lives unrenewed; it is
	// renewed every third of it. An instance that stops without a word is
	// taken over once its Lease ran out. Default 15s.
	LeaseDuration time.Duration
	// ShutdownGrace bounds how long in-flight deliveries may finish after
	// the context ends. Default 30s.
	ShutdownGrace time.Duration
	// CheckpointInterval is how often delivery progress is stored; a crash
	// delivers again at most what was finished since. Default 200ms.
	CheckpointInterval time.Duration
	// LaneMemory bounds how many events one subscription keeps in memory;
	// more move to the backlog stream. Default 1000.
	LaneMemory int
	// MemoryRetry is the longest retry delay waited in memory; longer
	// retries move to the backlog stream. Default 10s.
	MemoryRetry time.Duration
	// LagAge and LagEvents bound how long, and how far behind, the events
	// of a subscription that cannot keep up wait in the events stream
	// before they move to the backlog stream, out of the way of the
	// stream's purge. Defaults 1m and 100,000.
	LagAge    time.Duration
	LagEvents uint64

	Clock  Clock
	Logger *slog.Logger
}

// Clock is the time the dispatcher reads, injected so tests control it.
type Clock interface {
	clock.WithTicker
	AfterFunc(d time.Duration, f func()) clock.Timer
}

func (o *Options) defaults() {
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = 1 << 20
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = 10 * time.Second
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 200 * time.Millisecond
	}
	if o.LaneMemory <= 0 {
		o.LaneMemory = 1000
	}
	if o.MemoryRetry <= 0 {
		o.MemoryRetry = 10 * time.Second
	}
	if o.LagAge <= 0 {
		o.LagAge = time.Minute
	}
	if o.LagEvents == 0 {
		o.LagEvents = 100_000
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Dispatcher is one running instance.
type Dispatcher struct {
	opts   Options
	log    *slog.Logger
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	queue  *queue.Queue
	sender *delivery.Sender
	egress *egressConfig
	// clients holds one HTTP client per TLS identity subscriptions use.
	clients *delivery.Clients
	writer  *report.Writer
	metrics *metrics
	events  events.EventRecorder
	eventsB events.EventBroadcaster

	store       *store
	subs        *subscriptions
	instances   *instances
	deliverer   *deliverer
	env         *laneEnv
	mover       *mover
	router      *router
	checkpoints *checkpointer
	view        *progressView
	// workers counts the lanes' delivery goroutines.
	workers sync.WaitGroup
	// reliefLine is, while the events stream is more than crowdedShare
	// full, the sequence below which subscriptions move what they hold of
	// it to the backlog stream; 0 otherwise (see relieve).
	reliefLine atomic.Uint64

	ingestLn, healthLn, metricsLn net.Listener

	// ready is set once the cluster state is synced and every served
	// subscription has its consumer; it gates /readyz and the Lease.
	ready atomic.Bool
	// becameReady wakes the Lease renewal when ready is first set.
	becameReady chan struct{}
	// draining is set at shutdown: /readyz fails so traffic moves away.
	draining atomic.Bool
	// leading is set while this instance writes status.
	leading atomic.Bool

	// deliverCtx outlives the consumption context by ShutdownGrace, so
	// deliveries in flight at shutdown finish rather than being cut off.
	deliverCtx    context.Context
	cancelDeliver context.CancelFunc

	// deadLetters writes the DeadLettered Event series.
	deadLetters *deadLetterEvents
	// queueFull wakes observeQueue when ingest found the queue full;
	// queueFullEvents limits the Events saying so.
	queueFull       chan struct{}
	queueFullEvents throttle
}

// New prepares a dispatcher: clients, listeners and the ingest handler.
// Nothing runs until Run.
func New(opts Options) (*Dispatcher, error) {
	opts.defaults()
	if opts.Name == "" || opts.Namespace == "" || opts.Instance == "" {
		return nil, errors.New("the dispatcher's name, namespace and instance are required")
	}
	if opts.Queue == nil || opts.Kube == nil {
		return nil, errors.New("a queue and a Kubernetes connection are required")
	}
	kube, err := kubernetes.NewForConfig(opts.Kube)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(opts.Kube)
	if err != nil {
		return nil, fmt.Errorf("creating the dynamic client: %w", err)
	}
	d := &Dispatcher{
		opts:        opts,
		log:         opts.Logger.With("dispatcher", opts.Namespace+"/"+opts.Name, "instance", opts.Instance),
		kube:        kube,
		dyn:         dyn,
		queue:       opts.Queue,
		egress:      &egressConfig{},
		queueFull:   make(chan struct{}, 1),
		becameReady: make(chan struct{}, 1),
		metrics:     newMetrics(),
	}
	d.sender = &delivery.Sender{Client: delivery.NewClient(d.baseClientOptions()), Clock: opts.Clock}
	d.clients = delivery.NewClients(d.baseClientOptions())
	if d.store, err = newStore(kube, dyn, opts.Namespace, opts.Name); err != nil {
		return nil, err
	}
	d.instances = newInstances(kube, opts.Namespace, opts.Name, opts.Instance, opts.Queue.Embedded(), opts.LeaseDuration, opts.Clock, d.log)
	d.deadLetters = newDeadLetterEvents(kube.EventsV1(), opts.Clock, opts.Instance, d.log)
	d.deliverer = &deliverer{clock: opts.Clock, log: d.log, sender: d.sender, bodies: newSharedBodies(), metrics: d.metrics,
		queue: opts.Queue, events: d.recorder, deadLetters: d.deadLetters}
	d.mover = newMover(opts.Queue, opts.Clock, d.log.With("component", "mover"))
	d.router = newRouter(opts.Queue, d.mover)
	d.checkpoints = newCheckpointer(opts.Queue, d.router, opts.Instance, opts.CheckpointInterval, opts.Clock, d.log.With("component", "checkpoint"))
	d.view = newProgressView(d.log.With("component", "progress"))
	d.view.changed = d.checkpointed
	d.env = &laneEnv{clock: opts.Clock, attempts: d.deliverer, mover: d.mover, queue: opts.Queue,
		memory: opts.LaneMemory, memoryRetry: opts.MemoryRetry, lagAge: opts.LagAge, lagEvents: opts.LagEvents,
		position: d.router.position, reliefLine: d.reliefLine.Load, workers: &d.workers, log: d.log}
	d.subs = newSubscriptions(subscriptionDeps{
		instance:    opts.Instance,
		log:         d.log,
		clock:       opts.Clock,
		kube:        kube,
		store:       d.store,
		instances:   d.instances,
		queue:       opts.Queue,
		view:        d.view,
		env:         d.env,
		router:      d.router,
		checkpoints: d.checkpoints,
		orphans:     &orphanCollector{queue: opts.Queue, view: d.view, exists: d.store.exists, log: d.log},
		metrics:     d.metrics,
		sender:      d.sender,
		clients:     d.clients,
		egress:      d.egress,
		leading:     d.leading.Load,
		events:      d.recorder,
		serving:     d.serving,
	})
	d.env.onGone = d.subs.gone
	d.writer = report.NewWriter(report.Options{
		Client:       dyn,
		Interval:     opts.StatusInterval,
		FieldManager: FieldManager,
		Clock:        opts.Clock,
		Logger:       d.log.With("component", "status"),
		Source: &statusSource{subs: d.subs, store: d.store, view: d.view, queue: opts.Queue, metrics: d.metrics,
			log: d.log, events: d.recorder},
	})
	d.metrics.registerStatusWrites(func() float64 { return float64(d.writer.Writes()) })

	if d.ingestLn, err = listen(opts.IngestAddr, "ingest"); err != nil {
		return nil, err
	}
	if d.healthLn, err = listen(opts.HealthAddr, "health probe"); err != nil {
		d.closeListeners()
		return nil, err
	}
	if d.metricsLn, err = listen(opts.MetricsAddr, "metrics"); err != nil {
		d.closeListeners()
		return nil, err
	}
	return d, nil
}

// baseClientOptions are what every delivery client shares: the egress
// guard and the proxy.
func (d *Dispatcher) baseClientOptions() delivery.ClientOptions {
	return delivery.ClientOptions{DialContext: d.egress.dial, Proxy: d.egress.proxyFor}
}

func listen(addr, what string) (net.Listener, error) {
	if addr == "" && what != "ingest" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for %s on %s: %w", what, addr, err)
	}
	return ln, nil
}

func (d *Dispatcher) closeListeners() {
	for _, ln := range []net.Listener{d.ingestLn, d.healthLn, d.metricsLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// IngestAddr is the address the ingest API listens on.
func (d *Dispatcher) IngestAddr() string { return d.ingestLn.Addr().String() }

// HealthAddr is the address of /healthz and /readyz, "" when disabled.
func (d *Dispatcher) HealthAddr() string { return addrOf(d.healthLn) }

// MetricsAddr is the address of /metrics, "" when disabled.
func (d *Dispatcher) MetricsAddr() string { return addrOf(d.metricsLn) }

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Run serves until ctx ends, then shuts down gracefully: it stops
// ingesting, lets deliveries in flight finish (within ShutdownGrace),
// flushes delivery health, and withdraws its Lease.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.closeListeners()
	d.deliverCtx, d.cancelDeliver = context.WithCancel(context.WithoutCancel(ctx))
	defer d.cancelDeliver()
	d.env.ctx = d.deliverCtx

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building the event scheme: %w", err)
	}
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building the event scheme: %w", err)
	}
	d.eventsB = events.NewBroadcaster(&events.EventSinkImpl{Interface: d.kube.EventsV1()})
	d.eventsB.StartRecordingToSink(d.deliverCtx.Done())
	defer d.eventsB.Shutdown()
	d.events = d.eventsB.NewRecorder(scheme, "hookline-dispatcher")

	servers := d.servers()
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range servers {
		g.Go(func() error {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serving %s: %w", s.name, err)
			}
			return nil
		})
	}
	g.Go(func() error { return d.view.run(gctx, d.queue) })
	g.Go(func() error {
		// Lanes resume from their checkpoints: they must all be known
		// before the first subscription is served.
		select {
		case <-d.view.loaded:
		case <-gctx.Done():
			return nil
		}
		return d.subs.run(gctx)
	})
	g.Go(func() error { d.mover.run(d.deliverCtx); return nil })
	g.Go(func() error { d.announce(gctx); return nil })
	g.Go(func() error { d.leadStatus(gctx); return nil })
	g.Go(func() error { d.observeQueue(gctx); return nil })
	g.Go(func() error { d.deadLetters.run(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		d.shutdown(servers)
		return nil
	})
	err := g.Wait()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

type server struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

func (d *Dispatcher) servers() []server {
	ingestHandler := ingest.NewHandler(publisher{q: d.queue, clock: d.opts.Clock, full: d.noteQueueFull}, ingest.Options{
		MaxBodyBytes: d.opts.MaxEventBytes,
		Authorizer:   d.opts.Authorizer,
		Replayer:     d,
		Tester:       d,
		Clock:        d.opts.Clock,
		Logger:       d.log.With("component", "ingest"),
		Observe: func(ns string, n int, outcome string) {
			d.metrics.ingested.WithLabelValues(ns, outcome).Add(float64(n))
		},
	})
	out := []server{{name: "ingest", ln: d.ingestLn, srv: &http.Server{
		Handler:           d.gateIngest(ingestHandler),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}}}
	if d.healthLn != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		mux.HandleFunc("GET /readyz", d.readyz)
		out = append(out, server{name: "health probes", ln: d.healthLn, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}})
	}
	if d.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.registry, promhttp.HandlerOpts{}))
		out = append(out, server{name: "metrics", ln: d.metricsLn, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}})
	}
	return out
}

// gateIngest answers 503 until the dispatcher serves its subscriptions, so
// an event is never accepted before the consumers that must see it exist.
func (d *Dispatcher) gateIngest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.ready.Load() || d.draining.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":503,"reason":"ServiceUnavailable","message":"the dispatcher is starting or stopping; retry shortly"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (d *Dispatcher) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := d.healthy(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// healthy says why this instance cannot serve, or nil.
func (d *Dispatcher) healthy() error {
	switch {
	case d.draining.Load():
		return errors.New("shutting down")
	case !d.ready.Load():
		return errors.New("waiting for the subscriptions to be served")
	}
	if err := d.queue.Healthy(); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}

func (d *Dispatcher) shutdown(servers []server) {
	d.log.Info("Shutting down: no more events accepted, finishing deliveries in flight", "grace", d.opts.ShutdownGrace)
	d.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.ShutdownGrace)
	defer cancel()
	for _, s := range servers {
		if err := s.srv.Shutdown(ctx); err != nil {
			d.log.Error("Stopping a server", "server", s.name, "err", err)
		}
	}
	// No delivery starts any more; those in flight get the grace period,
	// after which they are cut off and delivered again at the next start.
	d.subs.stopLanes()
	if !waitGroup(ctx, &d.workers) {
		d.log.Warn("Deliveries still in flight at the end of the grace period are cut off and delivered again at the next start")
	}
	d.cancelDeliver()
	d.workers.Wait()
	// What was finished is recorded, so the next start delivers none of
	// it again.
	if d.router.position() != 0 && !d.checkpoints.save(context.Background()) {
		d.log.Warn("The last checkpoint was not stored: the next start delivers again what was finished since the one before")
	}
}

// waitGroup waits for wg, or for ctx; it reports whether wg was done.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// recorder is the event recorder, which exists once the dispatcher runs.
func (d *Dispatcher) recorder() events.EventRecorder { return d.events }

// serving is told once every subscription known at start is served: it
// starts routing, and the dispatcher is ready to accept events.
func (d *Dispatcher) serving(ctx context.Context) error {
	if err := d.startRouting(ctx); err != nil {
		return err
	}
	d.ready.Store(true)
	// Announce at once rather than at the next renewal.
	select {
	case d.becameReady <- struct{}{}:
	default:
	}
	return nil
}

// startRouting starts the router at the lowest position any lane registered
// so far needs, and the checkpoints. Lanes without a checkpoint take what
// the router reads from there.
func (d *Dispatcher) startRouting(ctx context.Context) error {
	from, err := d.routingStart(ctx)
	if err != nil {
		return err
	}
	go func() {
		if err := d.router.run(ctx, from); err != nil && ctx.Err() == nil {
			d.log.Error("Routing events stopped", "err", err)
		}
	}()
	<-d.router.started
	go d.checkpoints.run(ctx)
	go d.tendEvents(ctx)
	d.log.Info("Routing events", "from", from)
	return nil
}

// routingStart is where the router starts: the lowest floor of this
// instance's lanes and its own last checkpoint; with neither, the first
// event stored.
func (d *Dispatcher) routingStart(ctx context.Context) (uint64, error) {
	first, last, err := d.queue.EventsBounds(ctx)
	if err != nil {
		return 0, err
	}
	from := last + 1
	if r, ok := d.view.reader(d.opts.Instance); ok {
		from = min(from, r.Floor)
	}
	// A lane without a checkpoint (start 0) takes what the store holds.
	for _, l := range d.subs.lanes() {
		from = min(from, max(l.start, 1))
	}
	return max(from, first, 1), nil
}

// tendEvents looks at the events stream's use every checkpoint interval:
// subscriptions holding back a crowded stream move their events out of its
// way (relieve), and the events no subscription needs any more are purged
// when purgeDue says it is time.
func (d *Dispatcher) tendEvents(ctx context.Context) {
	var p purgeState
	onTicks(ctx, d.opts.Clock, d.opts.CheckpointInterval, func() {
		u, err := d.queue.Usage(ctx)
		if err != nil {
			return
		}
		d.relieve(u)
		d.purge(ctx, u, &p)
	})
}

// purgeState is what the last purge removed, and when.
type purgeState struct {
	below uint64
	at    time.Time
}

// purge removes the events below the floor of every subscription, when
// purgeDue says it is time. Only the status leader does it.
func (d *Dispatcher) purge(ctx context.Context, u queue.Usage, last *purgeState) {
	if !d.leading.Load() && !d.queue.Embedded() {
		return
	}
	live := d.instances.liveSet()
	if d.queue.Embedded() {
		live = map[string]bool{d.opts.Instance: true}
	}
	floor, ok := d.view.purgeFloor(live, d.store.exists)
	if !ok || floor <= last.below {
		d.log.Debug("Nothing to purge", "floor", floor, "known", ok, "purgedBelow", last.below)
		return
	}
	now := d.opts.Clock.Now()
	if !purgeDue(u, floor, now.Sub(last.at)) {
		return
	}
	if err := d.queue.PurgeEvents(ctx, floor); err != nil {
		if ctx.Err() == nil {
			d.log.Warn("Purging delivered events", "below", floor, "err", err)
		}
		return
	}
	*last = purgeState{below: floor, at: now}
}

// A purge holds the events stream's lock while it unlinks whole blocks
// and rewrites the one it cuts through, so ingest waits meanwhile: the
// stream is purged once it holds purgeShare of its bound, well before
// subscriptions behind are told it is crowded, or every purgeEvery
// otherwise, never on every checkpoint.
const (
	purgeShare = 0.2
	purgeEvery = 10 * time.Second
)

// purgeDue says whether the events below floor are to be purged now, with
// the stream's use u and the time since the last purge.
func purgeDue(u queue.Usage, floor uint64, since time.Duration) bool {
	if floor <= u.FirstSeq {
		return false
	}
	if u.MaxBytes > 0 && float64(u.Bytes) >= purgeShare*float64(u.MaxBytes) {
		return true
	}
	return since >= purgeEvery
}

// crowdedShare is the share of the events stream's bound past which the
// subscriptions that hold back its oldest part move their events to the
// backlog stream at once rather than after the lag bounds: one slow or
// dead endpoint must never fill the stream and make ingest refuse events
// for everyone.
const crowdedShare = 0.5

// reliefLine is, for the events stream's use u and the router's position,
// the sequence below which subscriptions move what they hold of the stream
// out of its way: the older half of what it holds once it is crowded, 0
// while it is not. Only the subscriptions furthest behind (a dead
// endpoint's) move, not those a little behind the router, whose events
// would only be copied and read back; if the stream is still crowded once
// they have moved and it is purged, the next line is higher.
func reliefLine(u queue.Usage, position uint64) uint64 {
	if u.MaxBytes == 0 || float64(u.Bytes) <= crowdedShare*float64(u.MaxBytes) {
		return 0
	}
	first := max(u.FirstSeq, 1)
	if position <= first {
		return first
	}
	return first + (position-first)/2
}

// relieve sets the relief line for the events stream's use u and has the
// lanes holding events below it move them.
func (d *Dispatcher) relieve(u queue.Usage) {
	line := reliefLine(u, d.router.position())
	if was := d.reliefLine.Swap(line); was == 0 && line != 0 {
		d.log.Info("The events stream is filling up: subscriptions holding back its older half move their events to the backlog stream",
			"bytes", u.Bytes, "maxBytes", u.MaxBytes, "below", line)
	}
	if line != 0 {
		for _, l := range d.subs.lanes() {
			l.relieve(line)
		}
	}
}

// onTicks calls f every interval of clk, the first time one interval from
// now, until ctx ends.
func onTicks(ctx context.Context, clk clock.WithTicker, every time.Duration, f func()) {
	t := clk.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		f()
	}
}

// checkpointed is told of every lane checkpoint stored, by any instance.
func (d *Dispatcher) checkpointed(token string, rec laneRecord) {
	key := rec.Namespace + "/" + rec.Name
	if l := d.subs.lane(key, token); l != nil {
		if rec.Owner != d.opts.Instance {
			// Another instance claimed it since this one did (they
			// disagreed for a moment on who is live): this one stops
			// at once, so that two never deliver side by side.
			d.subs.yield(key, l)
		}
	} else if rec.Owner == "" {
		// Let go by its owner: the instance that owns it now takes it.
		d.subs.wake(key)
	}
	if d.leading.Load() {
		d.writer.Prompt(rec.Namespace, rec.Name, rec.Generation)
	}
}

// publisher adapts the queue to the ingest API.
type publisher struct {
	q     *queue.Queue
	clock clock.WithTicker
	// full is called when the queue refused events for lack of room.
	full func()
}

// publishBudget bounds how long a publish is retried when its outcome is
// unknown (a timeout while a clustered stream changes leader): the
// events may already be stored, and only a definite answer lets ingest
// say 202 or an error truthfully. Retrying with the same message ids is
// safe, since the queue stores an id once.
const publishBudget = 15 * time.Second

func (p publisher) Publish(ctx context.Context, evs []ingest.Event) ([]ingest.PublishResult, error) {
	qe := make([]queue.Event, len(evs))
	for i, e := range evs {
		qe[i] = queue.Event{ID: e.ID, Namespace: e.Namespace, Type: e.Type, Time: e.Time, Data: e.Data}
	}
	start := p.clock.Now()
	var first []queue.PublishResult
	delay := 100 * time.Millisecond
	for {
		res, err := p.q.Publish(ctx, qe)
		if first == nil {
			first = res
		}
		if err == nil || !ambiguous(err) || ctx.Err() != nil || p.clock.Since(start)+delay > publishBudget {
			if p.full != nil && refusedFull(res, err) {
				p.full()
			}
			return publishResults(res, first, err)
		}
		select {
		case <-ctx.Done():
			return publishResults(res, first, err)
		case <-p.clock.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// ambiguous says whether a failed publish may have stored events anyway,
// so that retrying is the way to learn the outcome. A timeout is: the
// store may have happened and its answer been lost.
func ambiguous(err error) bool {
	return !errors.Is(err, queue.ErrFull) && !errors.Is(err, queue.ErrClosed)
}

// refusedFull says whether the queue refused any event for lack of room.
func refusedFull(res []queue.PublishResult, err error) bool {
	if errors.Is(err, queue.ErrFull) {
		return true
	}
	for _, r := range res {
		if errors.Is(r.Err, queue.ErrFull) {
			return true
		}
	}
	return false
}

// publishResults maps the queue's answer to ingest's. An event is reported
// a duplicate only if the first attempt found it stored already: one
// stored by an earlier attempt of this same request is not.
func publishResults(res, first []queue.PublishResult, err error) ([]ingest.PublishResult, error) {
	if errors.Is(err, queue.ErrFull) {
		return nil, fmt.Errorf("%w: %w", ingest.ErrQueueFull, err)
	}
	if err != nil && len(res) == 0 {
		return nil, err
	}
	out := make([]ingest.PublishResult, len(res))
	for i, r := range res {
		out[i] = ingest.PublishResult{Duplicate: r.Duplicate && i < len(first) && first[i].Duplicate && first[i].Err == nil, Err: r.Err}
		if errors.Is(r.Err, queue.ErrFull) {
			out[i].Err = fmt.Errorf("%w: %w", ingest.ErrQueueFull, r.Err)
		}
	}
	return out, nil
}
