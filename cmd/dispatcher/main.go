// Command dispatcher runs one WebhookDispatcher's data plane: the ingest
// API, the durable queue (embedded NATS JetStream or an external cluster),
// signed delivery to the attached subscriptions, and status write-back.
// The operator runs it as the dispatcher's StatefulSet; it runs as well
// outside a cluster with --kubeconfig.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/auth"
	"github.com/hookline/hookline/internal/dispatcher"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/version"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dispatcher:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		name, namespace, instance, kubeconfig string
		dataDir, queueURL, queueCreds         string
		streamReplicas                        int
		queueMaxBytes, backlogMaxBytes        int64
		checkpointInterval, memoryRetry       time.Duration
		laneMemory                            int
		lagAge                                time.Duration
		queueMaxAge, dedupWindow              time.Duration
		producerAuth                          string
		ingestAddr, healthAddr, metricsAddr   string
		advertiseIngestURL                    string
		maxEventBytes                         int64
		statusInterval, shutdownGrace         time.Duration
		logLevel                              string
		kubeQPS                               float64
		kubeBurst                             int
	)
	hostname, _ := os.Hostname()
	defInstance := os.Getenv("POD_NAME")
	if defInstance == "" {
		defInstance = hostname
	}
	flag.StringVar(&name, "dispatcher-name", "", "Name of the WebhookDispatcher served (required).")
	flag.StringVar(&namespace, "dispatcher-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the WebhookDispatcher served; defaults to $POD_NAMESPACE.")
	flag.StringVar(&instance, "instance", defInstance, "Name of this instance among the dispatcher's; defaults to $POD_NAME, else the host name.")
	flag.StringVar(&kubeconfig, "kubeconfig", "", "Path to a kubeconfig, to run outside the cluster; empty means in-cluster configuration.")
	flag.StringVar(&dataDir, "data-dir", "", "Directory of the embedded queue's file store. Exactly one of --data-dir and --queue-url is required.")
	flag.StringVar(&queueURL, "queue-url", "", "URL(s) of an external NATS JetStream cluster, comma-separated.")
	flag.StringVar(&queueCreds, "queue-credentials", "", "NATS credentials file (.creds) for --queue-url.")
	flag.IntVar(&streamReplicas, "stream-replicas", 1, "Replicas of the streams on an external cluster.")
	flag.Int64Var(&queueMaxBytes, "queue-max-bytes", 0, "Bound of the events stream in bytes; 0 means 40% of the data directory's filesystem (embedded) or 1 GiB (external). When it is full, ingest answers 503.")
	flag.Int64Var(&backlogMaxBytes, "backlog-max-bytes", 0, "Bound of the backlog stream, which holds long retries and the backlog of subscriptions that are held or fall behind; 0 means 30% of the data directory's filesystem (embedded) or --queue-max-bytes (external).")
	flag.DurationVar(&checkpointInterval, "checkpoint-interval", 200*time.Millisecond, "How often delivery progress and counts are stored; a crash delivers again at most what was finished since.")
	flag.IntVar(&laneMemory, "subscription-memory-events", 1000, "Events one subscription keeps in memory; more move to the backlog stream until it catches up.")
	flag.DurationVar(&memoryRetry, "memory-retry", 10*time.Second, "Longest retry delay waited in memory; longer retries move to the backlog stream.")
	flag.DurationVar(&lagAge, "subscription-lag", time.Minute, "How long the events of a subscription that cannot keep up may wait in the events stream before they move to the backlog stream, out of the way of everyone else's.")
	flag.DurationVar(&queueMaxAge, "queue-max-age", 7*24*time.Hour, "Events older than this are dropped from the queue; keep it above every subscription's retry maxAge.")
	flag.DurationVar(&dedupWindow, "dedup-window", 2*time.Minute, "Window in which a producer-supplied event id is stored only once.")
	flag.StringVar(&producerAuth, "producer-authentication", string(hooklinev1.ProducerAuthServiceAccountToken),
		"ServiceAccountToken checks producers' bearer tokens (TokenReview, audience \"hookline\") and their RBAC (create webhookevents); None disables it, for local development only.")
	flag.StringVar(&ingestAddr, "ingest-bind-address", ":8080", "Address of the ingest API.")
	flag.StringVar(&advertiseIngestURL, "advertise-ingest-url", "", "URL at which clients outside the cluster reach the ingest API, announced on the instance Lease for kubectl hookline; for a dispatcher run as a local process (in a pod, kubectl hookline port-forwards instead).")
	flag.StringVar(&healthAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz; empty disables.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":9090", "Address of /metrics; empty disables.")
	flag.Int64Var(&maxEventBytes, "max-event-bytes", 1<<20, "Largest request body the ingest API accepts.")
	flag.DurationVar(&statusInterval, "status-interval", 10*time.Second, "Least time between two status writes of one subscription.")
	flag.DurationVar(&shutdownGrace, "shutdown-grace", 30*time.Second, "How long the stop may take after SIGTERM: deliveries in flight finish within it, then the queue closes with what is left of it.")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error.")
	flag.Float64Var(&kubeQPS, "kube-api-qps", 200, "Requests per second to the API server, status writes included: each busy subscription needs one per --status-interval, and each new one one for its Accepted condition.")
	flag.IntVar(&kubeBurst, "kube-api-burst", 400, "Burst of requests to the API server.")
	showVersion := flag.Bool("version", false, "Print the version and exit.")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return nil
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	klog.SetSlogLogger(log)

	switch {
	case name == "" || namespace == "":
		return errors.New("--dispatcher-name and --dispatcher-namespace (or $POD_NAMESPACE) are required")
	case (dataDir == "") == (queueURL == ""):
		return errors.New("exactly one of --data-dir (embedded queue) and --queue-url (external NATS) is required")
	case instance == "":
		return errors.New("--instance is required when neither $POD_NAME nor the host name is known")
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the Kubernetes configuration: %w", err)
	}
	cfg.UserAgent = "hookline-dispatcher/" + version.Version
	cfg.QPS, cfg.Burst = float32(kubeQPS), kubeBurst

	var authorizer *auth.Reviewer
	switch hooklinev1.ProducerAuthenticationMode(producerAuth) {
	case hooklinev1.ProducerAuthServiceAccountToken:
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return fmt.Errorf("creating the Kubernetes client: %w", err)
		}
		authorizer = auth.New(kube, auth.Options{Audience: "hookline"})
	case hooklinev1.ProducerAuthNone:
		log.Warn("Producer authentication is disabled: anyone who reaches the ingest API can publish into any namespace. Use this for local development only")
	default:
		return fmt.Errorf("--producer-authentication: %q is neither ServiceAccountToken nor None", producerAuth)
	}

	if advertiseIngestURL != "" {
		if u, err := url.Parse(advertiseIngestURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--advertise-ingest-url %q is not an http:// or https:// URL", advertiseIngestURL)
		}
	}

	var deadLetterMaxBytes int64
	if dataDir != "" {
		b, err := embeddedBounds(dataDir)
		if err != nil {
			return err
		}
		queueMaxBytes = cmp.Or(queueMaxBytes, b.events)
		backlogMaxBytes = cmp.Or(backlogMaxBytes, b.backlog)
		deadLetterMaxBytes = b.deadLetters
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	q, err := queue.Open(ctx, queue.Config{
		DispatcherNamespace: namespace,
		DispatcherName:      name,
		DataDir:             dataDir,
		URL:                 queueURL,
		CredentialsFile:     queueCreds,
		Replicas:            streamReplicas,
		MaxBytes:            queueMaxBytes,
		MaxAge:              queueMaxAge,
		DedupWindow:         dedupWindow,
		DeadLetterMaxBytes:  deadLetterMaxBytes,
		BacklogMaxBytes:     backlogMaxBytes,
		Logger:              log.With("component", "queue"),
	})
	if err != nil {
		return fmt.Errorf("opening the queue: %w", err)
	}
	// The grace period counts from SIGTERM, or from a failure that ends
	// the run.
	stopping := make(chan time.Time, 1)
	context.AfterFunc(ctx, func() { stopping <- time.Now() })
	defer func() {
		stoppedAt := time.Now()
		select {
		case stoppedAt = <-stopping:
		default:
		}
		closeQueue(q, time.Until(stoppedAt.Add(shutdownGrace)), log)
	}()

	opts := dispatcher.Options{
		Namespace: namespace, Name: name, Instance: instance,
		Kube:       cfg,
		Queue:      q,
		IngestAddr: ingestAddr, HealthAddr: healthAddr, MetricsAddr: metricsAddr,
		AdvertiseIngestURL: advertiseIngestURL,
		MaxEventBytes:      maxEventBytes,
		StatusInterval:     statusInterval,
		CheckpointInterval: checkpointInterval,
		LaneMemory:         laneMemory,
		MemoryRetry:        memoryRetry,
		LagAge:             lagAge,
		ShutdownGrace:      shutdownGrace,
		Logger:             log,
	}
	if authorizer != nil {
		opts.Authorizer = authorizer
	}
	d, err := dispatcher.New(opts)
	if err != nil {
		return err
	}
	log.Info("Starting", "version", version.Version, "dispatcher", namespace+"/"+name, "instance", instance,
		"ingest", d.IngestAddr(), "health", d.HealthAddr(), "metrics", d.MetricsAddr())
	return d.Run(ctx)
}

// minQueueClose is the least time the queue is given to close, even when
// deliveries used the whole grace period: a clean close spares the next
// start rebuilding the streams' state from their files.
const minQueueClose = time.Second

// closeQueue closes the queue, waiting at most wait (at least
// minQueueClose). What a close cut short leaves undone is safe to drop:
// every stored event and checkpoint is synced to disk, and the server
// rebuilds the rest when it starts. At worst what was finished since the
// last checkpoint is delivered once more, which receivers deduplicate by
// webhook-id.
func closeQueue(q io.Closer, wait time.Duration, log *slog.Logger) {
	closed, err := closeWithin(q.Close, max(wait, minQueueClose))
	switch {
	case !closed:
		log.Warn("The queue did not close within the shutdown grace period; stopping without waiting for it",
			"waited", max(wait, minQueueClose))
	case err != nil:
		log.Error("Closing the queue", "err", err)
	}
}

// closeWithin runs close and waits for it at most wait; it reports whether
// close returned in time, and its error if it did.
func closeWithin(close func() error, wait time.Duration) (bool, error) {
	done := make(chan error, 1)
	go func() { done <- close() }()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case err := <-done:
		return true, err
	case <-timer.C:
		return false, nil
	}
}

// streamBounds are the sizes of the embedded queue's streams.
type streamBounds struct{ events, backlog, deadLetters int64 }

// embeddedBounds size the embedded queue's streams to its filesystem (the
// dispatcher's volume): 40% for events, 30% for the backlog stream, up to
// 10% (at most 256 MiB) for dead letters, the rest for checkpoints and
// JetStream's own files.
func embeddedBounds(dir string) (streamBounds, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return streamBounds{}, fmt.Errorf("creating the data directory: %w", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return streamBounds{}, fmt.Errorf("measuring the data directory's filesystem: %w", err)
	}
	total := float64(st.Blocks) * float64(st.Bsize)
	return streamBounds{events: int64(total * 0.4), backlog: int64(total * 0.3),
		deadLetters: min(int64(total*0.1), queue.DefaultDeadLetterMaxBytes)}, nil
}
