// Package queue is the dispatcher's durable queue: NATS JetStream, either a
// server embedded in the dispatcher process (file store, fsync on every write)
// or an external JetStream cluster. Both modes share one code path; only the
// way the connection is obtained differs.
//
// One dispatcher owns four streams, all named and subject-prefixed by the
// dispatcher's namespace and name so that several dispatchers can share one
// external cluster. Fsyncs are the scarce resource, so the layout spends
// them per batch, never per event or per subscription:
//
//   - the events stream (limits retention, discard new): ingest appends
//     events in atomic batches; each dispatcher instance reads it with one
//     reader (Read) and routes events in process. Events are never removed
//     one by one (each removal costs a synced tombstone): the stream is
//     purged below the lowest position any subscription still needs
//     (PurgeEvents), which unlinks whole blocks. Events addressed to one
//     subscription alone (replays) are stored on its direct subject;
//   - the progress stream (limits retention, last message per subject):
//     each subscription's checkpoint (which events it finished, its
//     delivery counts) and each instance's reader floor, written together
//     in one atomic batch per interval (SaveProgress);
//   - the backlog stream (limits retention, discard new): events moved out
//     of the events stream's way, on one subject per subscription: retries
//     that wait long, and the backlog of a subscription that is held or
//     falls behind (Park). A subscription's part is purged below its own
//     floor (PurgeBacklog);
//   - the dead-letter stream (limits retention): final failures, kept for
//     replay.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Defaults applied by Open to zero Config fields.
const (
	DefaultMaxBytes           int64 = 1 << 30
	DefaultMaxAge                   = 7 * 24 * time.Hour
	DefaultDedupWindow              = 2 * time.Minute
	DefaultDeadLetterMaxAge         = 14 * 24 * time.Hour
	DefaultDeadLetterMaxBytes int64 = 256 << 20
	// DefaultMaxBatch is the server's default limit on messages in one
	// atomic batch.
	DefaultMaxBatch = 1000
	// MaxReplicas is the largest replication factor JetStream supports.
	MaxReplicas = 5
)

const (
	// startTimeout bounds how long the embedded server may take to recover
	// its store and accept connections.
	startTimeout = 2 * time.Minute
	// apiTimeout bounds single JetStream API calls made without a caller
	// deadline.
	apiTimeout = 10 * time.Second
)

// Config configures Open.
type Config struct {
	// DispatcherNamespace and DispatcherName prefix every stream and subject.
	DispatcherNamespace, DispatcherName string

	// DataDir is the embedded server's file store, used when URL is empty.
	DataDir string
	// EmbeddedListen, when set (host:port), makes the embedded server accept
	// network clients too; otherwise it listens on no port at all and the
	// dispatcher connects in process.
	EmbeddedListen string

	// URL selects external mode: one or more comma-separated NATS URLs.
	URL string
	// CredentialsFile is an optional NATS .creds file for external mode.
	CredentialsFile string

	// Replicas of every stream; default 1, at most 1 when embedded.
	Replicas int
	// MaxBytes bounds the events stream; default DefaultMaxBytes.
	MaxBytes int64
	// MaxAge bounds the events stream; default DefaultMaxAge.
	MaxAge time.Duration
	// DedupWindow is how long a published event id is remembered; default
	// DefaultDedupWindow.
	DedupWindow time.Duration
	// DeadLetterMaxAge bounds the dead-letter stream; default
	// DefaultDeadLetterMaxAge.
	DeadLetterMaxAge time.Duration
	// DeadLetterMaxBytes bounds the dead-letter stream; default
	// DefaultDeadLetterMaxBytes.
	DeadLetterMaxBytes int64
	// BacklogMaxBytes bounds the backlog stream; default MaxBytes.
	BacklogMaxBytes int64
	// MaxBatch is the largest atomic batch sent to JetStream; default
	// DefaultMaxBatch.
	MaxBatch int

	// Logger receives the queue's and the embedded server's logs.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.DispatcherNamespace == "" || c.DispatcherName == "" {
		return errors.New("dispatcher namespace and name are required")
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Replicas < 1 || c.Replicas > MaxReplicas {
		return fmt.Errorf("replicas must be between 1 and %d, got %d", MaxReplicas, c.Replicas)
	}
	if c.URL == "" {
		if c.DataDir == "" {
			return errors.New("embedded mode needs a data directory")
		}
		if c.Replicas != 1 {
			return fmt.Errorf("embedded mode supports 1 replica, got %d", c.Replicas)
		}
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.DeadLetterMaxAge == 0 {
		c.DeadLetterMaxAge = DefaultDeadLetterMaxAge
	}
	if c.DeadLetterMaxBytes == 0 {
		c.DeadLetterMaxBytes = DefaultDeadLetterMaxBytes
	}
	if c.BacklogMaxBytes == 0 {
		c.BacklogMaxBytes = c.MaxBytes
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxBatch < 1 {
		return fmt.Errorf("max batch must be positive, got %d", c.MaxBatch)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Names are the streams and subjects of one dispatcher.
type Names struct {
	EventsStream, DeadLetterStream, ProgressStream, BacklogStream string
	// EventsPrefix is "hookline.<ns>.<name>.events"; an event's subject is
	// EventsPrefix.<eventNamespace>.<eventType>.
	EventsPrefix string
	// DirectPrefix is "hookline.<ns>.<name>.direct"; an event addressed to
	// one subscription alone, such as a replayed dead letter, has subject
	// DirectPrefix.<subscription token>. It lives in the events stream.
	DirectPrefix string
	// DeadLetterPrefix is "hookline.<ns>.<name>.deadletter".
	DeadLetterPrefix string
	// ProgressPrefix is "hookline.<ns>.<name>.progress"; a checkpoint has
	// subject ProgressPrefix.<key>.
	ProgressPrefix string
	// BacklogPrefix is "hookline.<ns>.<name>.backlog"; a subscription's
	// moved events have subject BacklogPrefix.<subscription token>.
	BacklogPrefix string
}

// NamesFor derives the stream names and subjects of a dispatcher. Kubernetes
// names hold only [a-z0-9-.] and namespaces no dot, so replacing every
// character that streams and subject tokens refuse with "_" keeps distinct
// dispatchers distinct.
func NamesFor(dispatcherNamespace, dispatcherName string) Names {
	ns, name := sanitize(dispatcherNamespace), sanitize(dispatcherName)
	base := "HOOKLINE_" + ns + "_" + name
	subj := "hookline." + ns + "." + name
	return Names{
		EventsStream:     base + "_EVENTS",
		DeadLetterStream: base + "_DEADLETTER",
		ProgressStream:   base + "_PROGRESS",
		BacklogStream:    base + "_BACKLOG",
		EventsPrefix:     subj + ".events",
		DirectPrefix:     subj + ".direct",
		DeadLetterPrefix: subj + ".deadletter",
		ProgressPrefix:   subj + ".progress",
		BacklogPrefix:    subj + ".backlog",
	}
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`.*>/\`, r) {
			return '_'
		}
		return r
	}, s)
}

// Queue is an open connection to the dispatcher's streams. It is safe for
// concurrent use.
type Queue struct {
	cfg   Config
	log   *slog.Logger
	names Names
	srv   *server.Server // nil in external mode
	nc    *nats.Conn
	js    jetstream.JetStream

	ncClosed chan struct{}

	group     chan *publishRequest
	batchSem  chan struct{}
	stop      chan struct{}
	groupDone chan struct{}
	closeOnce sync.Once
	closeErr  error

	// publishRoundTrips counts JetStream store requests (single publishes
	// and batch commits), which is what group commit saves.
	publishRoundTrips atomic.Int64
}

// Open starts the embedded server or connects to the external cluster, then
// creates the streams or updates them in place to match cfg.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("validating queue configuration: %w", err)
	}
	q := &Queue{
		cfg:       cfg,
		log:       cfg.Logger,
		names:     NamesFor(cfg.DispatcherNamespace, cfg.DispatcherName),
		ncClosed:  make(chan struct{}),
		group:     make(chan *publishRequest, cfg.MaxBatch),
		batchSem:  make(chan struct{}, maxInflightBatches),
		stop:      make(chan struct{}),
		groupDone: make(chan struct{}),
	}
	opts := []nats.Option{
		nats.Name("hookline-dispatcher"),
		nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(q.ncClosed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				q.log.Warn("Disconnected from NATS", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			q.log.Info("Reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"error", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			q.log.Warn("NATS asynchronous error", attrs...)
		}),
	}
	var err error
	if cfg.URL == "" {
		q.srv, err = startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.InProcessServer(q.srv))
		q.nc, err = nats.Connect("", opts...)
	} else {
		if cfg.CredentialsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredentialsFile))
		}
		q.nc, err = nats.Connect(cfg.URL, opts...)
	}
	if err != nil {
		q.shutdownServer()
		return nil, fmt.Errorf("connecting to NATS: %w", err)
	}
	q.js, err = jetstream.New(q.nc)
	if err != nil {
		q.closeConn()
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	if err := q.ensureStreams(ctx); err != nil {
		q.closeConn()
		return nil, err
	}
	go q.groupCommit()
	q.log.Info("Queue open", "embedded", q.srv != nil, "eventsStream", q.names.EventsStream, "replicas", cfg.Replicas)
	return q, nil
}

// progressMaxBytes bounds the progress stream, which keeps one checkpoint
// per subscription and instance; storeSlack is head room for JetStream's
// own files in the embedded store.
const (
	progressMaxBytes int64 = 256 << 20
	storeSlack       int64 = 16 << 20
)

func startEmbedded(cfg Config) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "hookline-" + sanitize(cfg.DispatcherNamespace) + "-" + sanitize(cfg.DispatcherName),
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		// The default syncs every two minutes, so an OS crash would lose
		// writes that were already acknowledged to producers.
		SyncAlways: true,
		DontListen: true,
		NoSigs:     true,
		// Reserve exactly what the streams may hold: JetStream's own
		// default is a share of the disk's free space, which refuses
		// streams whose bounds were sized for the volume.
		JetStreamMaxStore: cfg.MaxBytes + cfg.BacklogMaxBytes + cfg.DeadLetterMaxBytes + progressMaxBytes + storeSlack,
	}
	if cfg.EmbeddedListen != "" {
		host, port, err := splitHostPort(cfg.EmbeddedListen)
		if err != nil {
			return nil, fmt.Errorf("parsing embedded listen address: %w", err)
		}
		opts.DontListen = false
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("creating embedded NATS server: %w", err)
	}
	srv.SetLoggerV2(&serverLogger{log: cfg.Logger.With("component", "nats-server")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(startTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("embedded NATS server did not become ready")
	}
	return srv, nil
}

// Embedded reports whether the queue is the server embedded in this
// process, which serves one dispatcher instance alone.
func (q *Queue) Embedded() bool { return q.srv != nil }

// Names returns the dispatcher's stream names and subjects.
func (q *Queue) Names() Names { return q.names }

// ClientURL is the embedded server's client address when it listens on the
// network, else "".
func (q *Queue) ClientURL() string {
	if q.srv == nil || q.cfg.EmbeddedListen == "" {
		return ""
	}
	return q.srv.ClientURL()
}

func (q *Queue) ensureStreams(ctx context.Context) error {
	streams := []jetstream.StreamConfig{
		{
			Name:        q.names.EventsStream,
			Description: "Hookline events of dispatcher " + q.cfg.DispatcherNamespace + "/" + q.cfg.DispatcherName,
			Subjects:    []string{q.names.EventsPrefix + ".>", q.names.DirectPrefix + ".>"},
			// Limits: an event is never removed one by one; the stream is
			// purged below the lowest position still needed. A store of an
			// earlier version (interest retention) is converted in place.
			Retention: jetstream.LimitsPolicy,
			// New: a full store refuses new events rather than dropping
			// accepted ones.
			Discard:            jetstream.DiscardNew,
			MaxBytes:           q.cfg.MaxBytes,
			MaxAge:             q.cfg.MaxAge,
			MaxMsgs:            -1,
			MaxConsumers:       -1,
			MaxMsgsPerSubject:  -1,
			Duplicates:         q.cfg.DedupWindow,
			AllowAtomicPublish: true,
			Storage:            jetstream.FileStorage,
			Replicas:           q.cfg.Replicas,
		},
		{
			Name:               q.names.BacklogStream,
			Description:        "Hookline events moved out of the events stream's way, by subscription",
			Subjects:           []string{q.names.BacklogPrefix + ".>"},
			Retention:          jetstream.LimitsPolicy,
			Discard:            jetstream.DiscardNew,
			Duplicates:         q.cfg.DedupWindow,
			MaxBytes:           q.cfg.BacklogMaxBytes,
			MaxAge:             q.cfg.MaxAge,
			MaxMsgs:            -1,
			MaxConsumers:       -1,
			MaxMsgsPerSubject:  -1,
			AllowAtomicPublish: true,
			Storage:            jetstream.FileStorage,
			Replicas:           q.cfg.Replicas,
		},
		{
			Name:        q.names.ProgressStream,
			Description: "Hookline delivery checkpoints, one per subscription and instance",
			Subjects:    []string{q.names.ProgressPrefix + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxBytes:    progressMaxBytes,
			MaxMsgs:     -1,
			// Only the latest checkpoint of each subject counts.
			MaxMsgsPerSubject:  1,
			MaxConsumers:       -1,
			AllowAtomicPublish: true,
			Storage:            jetstream.FileStorage,
			Replicas:           q.cfg.Replicas,
		},
		{
			Name:              q.names.DeadLetterStream,
			Description:       "Hookline dead-lettered deliveries",
			Subjects:          []string{q.names.DeadLetterPrefix + ".>"},
			Retention:         jetstream.LimitsPolicy,
			Discard:           jetstream.DiscardOld,
			MaxBytes:          q.cfg.DeadLetterMaxBytes,
			MaxAge:            q.cfg.DeadLetterMaxAge,
			MaxMsgs:           -1,
			MaxConsumers:      -1,
			MaxMsgsPerSubject: -1,
			Duplicates:        q.cfg.DedupWindow,
			Storage:           jetstream.FileStorage,
			Replicas:          q.cfg.Replicas,
		},
	}
	for _, sc := range streams {
		if err := retryTransient(ctx, func(ctx context.Context) error {
			_, err := q.js.CreateOrUpdateStream(ctx, sc)
			return err
		}); err != nil {
			return fmt.Errorf("creating or updating stream %s: %w", sc.Name, err)
		}
	}
	return q.dropLegacy(ctx)
}

// dropLegacy removes what an earlier layout left: one durable consumer per
// subscription on the events stream, and the stats stream.
func (q *Queue) dropLegacy(ctx context.Context) error {
	st, err := q.js.Stream(ctx, q.names.EventsStream)
	if err != nil {
		return fmt.Errorf("looking up events stream: %w", err)
	}
	lister := st.ConsumerNames(ctx)
	var legacy []string
	for n := range lister.Name() {
		legacy = append(legacy, n)
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("listing consumers of the events stream: %w", err)
	}
	for _, n := range legacy {
		if !strings.HasPrefix(n, SubscriptionTokenPrefix) {
			continue
		}
		if err := st.DeleteConsumer(ctx, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("deleting consumer %s of an earlier layout: %w", n, err)
		}
	}
	base := strings.TrimSuffix(q.names.EventsStream, "_EVENTS")
	if err := q.js.DeleteStream(ctx, base+"_STATS"); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("deleting the stats stream of an earlier layout: %w", err)
	}
	if len(legacy) > 0 {
		q.log.Info("Removed the subscription consumers of an earlier queue layout", "consumers", len(legacy))
	}
	return nil
}

// retryTransient runs op until it succeeds, fails permanently or ctx ends.
// Stream and consumer creation right after a cluster forms may see "no
// responders" or "insufficient resources" until the meta leader is elected.
func retryTransient(ctx context.Context, op func(context.Context) error) error {
	backoff := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Cap: 2 * time.Second, Steps: math.MaxInt32}
	var err error
	_ = backoff.DelayFunc().Until(ctx, true, true, func(ctx context.Context) (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, apiTimeout)
		err = op(cctx)
		cancel()
		return err == nil || !isTransient(err) || ctx.Err() != nil, nil
	})
	return err
}

func isTransient(err error) bool {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 503 covers "insufficient resources" while a cluster has no
		// quorum, and "JetStream system temporarily unavailable".
		return apiErr.Code == 503 && apiErr.ErrorCode != codeStreamStoreFailed
	}
	return false
}

// Healthy reports whether the connection is up and JetStream answers.
func (q *Queue) Healthy() error {
	if st := q.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("checking NATS connection: status %s", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := q.js.Stream(ctx, q.names.EventsStream); err != nil {
		return fmt.Errorf("checking events stream: %w", err)
	}
	return nil
}

// Close drains the connection and, in embedded mode, shuts the server down,
// waiting for both. Publish calls still waiting fail with ErrClosed.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		close(q.stop)
		<-q.groupDone
		q.closeErr = q.closeConn()
		q.log.Info("Queue closed")
	})
	return q.closeErr
}

func (q *Queue) closeConn() error {
	var err error
	if q.nc != nil {
		if derr := q.nc.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
			err = fmt.Errorf("draining NATS connection: %w", derr)
			q.nc.Close()
		}
		select {
		case <-q.ncClosed:
		case <-time.After(30 * time.Second):
			q.nc.Close()
		}
	}
	q.shutdownServer()
	return err
}

func (q *Queue) shutdownServer() {
	if q.srv != nil {
		q.srv.Shutdown()
		q.srv.WaitForShutdown()
	}
}

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("queue closed")
