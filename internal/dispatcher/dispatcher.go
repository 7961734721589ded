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
	// renewed every third of it. Default 30s.
	LeaseDuration time.Duration
	// ShutdownGrace bounds how long in-flight deliveries may finish after
	// the context ends. Default 30s.
	ShutdownGrace time.Duration

	Clock  clock.WithTicker
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = 1 << 20
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = 10 * time.Second
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = 30 * time.Second
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
	// bodies encodes each event's body once for all its deliveries.
	bodies   *sharedBodies
	recorder *report.Recorder
	writer   *report.Writer
	metrics  *metrics
	events   events.EventRecorder
	eventsB  events.EventBroadcaster

	subs *subscriptions

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
	// instances is how many instances of the dispatcher run, by their
	// Leases; rate limits are shared among them.
	instances atomic.Int32

	// deliverCtx outlives the consumption context by ShutdownGrace, so
	// deliveries in flight at shutdown finish rather than being cut off.
	deliverCtx    context.Context
	cancelDeliver context.CancelFunc

	deadLetterEvents sync.Map // report.Key -> *throttle
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
		bodies:      newSharedBodies(),
		recorder:    report.NewRecorder(opts.Instance),
		queueFull:   make(chan struct{}, 1),
		becameReady: make(chan struct{}, 1),
		metrics:     newMetrics(),
	}
	d.sender = &delivery.Sender{Client: delivery.NewClient(d.baseClientOptions()), Clock: opts.Clock}
	d.clients = delivery.NewClients(d.baseClientOptions())
	d.instances.Store(1)
	d.subs = newSubscriptions(d)
	d.writer = report.NewWriter(report.Options{
		Client:       dyn,
		Interval:     opts.StatusInterval,
		FieldManager: FieldManager,
		Clock:        opts.Clock,
		Logger:       d.log.With("component", "status"),
		Lookup:       d.subs.reportState,
		Fetch:        d.fetchStats,
		Keys:         d.subs.keys,
		Suspended:    d.suspendedForFailure,
		BeforeTick:   d.subs.readCounts,
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
	d.deadLetters = newDeadLetterEvents(d.kube.EventsV1(), d.opts.Clock, d.opts.Instance, d.log)

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
	g.Go(func() error { return d.subs.run(gctx) })
	g.Go(func() error { d.announce(gctx); return nil })
	g.Go(func() error { d.leadStatus(gctx); return nil })
	g.Go(func() error { d.flushStats(gctx); return nil })
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
	// The consumers stop with the run context; deliveries in flight get
	// the grace period, after which their messages are redelivered.
	if !d.subs.waitWorkers(ctx) {
		d.log.Warn("Deliveries still in flight at the end of the grace period are released for redelivery")
	}
	d.cancelDeliver()
	d.subs.waitWorkers(context.Background())
	d.publishStats(context.Background())
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
