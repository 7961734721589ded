// Package queue is the dispatcher's durable queue: NATS JetStream, either a
// server embedded in the dispatcher process (file store, fsync on every write)
// or an external JetStream cluster. Both modes share one code path; only the
// way the connection is obtained differs.
//
// One dispatcher owns three streams, all named and subject-prefixed by the
// dispatcher's namespace and name so that several dispatchers can share one
// external cluster:
//
//   - the events stream (interest retention, discard new): one durable pull
//     consumer per subscription selects events by type, and also receives
//     the events addressed to it alone (replays) on its direct subject;
//   - the dead-letter stream (limits retention): final failures, kept for
//     replay;
//   - the stats stream (work queue): per-replica delivery deltas consumed by
//     the replica that writes status.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	statsMaxAge       = time.Hour
	statsConsumerName = "status-writer"
	statsAckWait      = 30 * time.Second
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
	EventsStream, DeadLetterStream, StatsStream string
	// EventsPrefix is "hookline.<ns>.<name>.events"; an event's subject is
	// EventsPrefix.<eventNamespace>.<eventType>.
	EventsPrefix string
	// DirectPrefix is "hookline.<ns>.<name>.direct"; an event addressed to
	// one subscription consumer alone, such as a replayed dead letter, has
	// subject DirectPrefix.<consumer name>. It lives in the events stream.
	DirectPrefix string
	// DeadLetterPrefix is "hookline.<ns>.<name>.deadletter".
	DeadLetterPrefix string
	// StatsSubject is "hookline.<ns>.<name>.stats".
	StatsSubject string
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
		StatsStream:      base + "_STATS",
		EventsPrefix:     subj + ".events",
		DirectPrefix:     subj + ".direct",
		DeadLetterPrefix: subj + ".deadletter",
		StatsSubject:     subj + ".stats",
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

	consumersMu sync.Mutex
	consumers   map[string]jetstream.ConsumerConfig // last applied, by name

	statsMu       sync.Mutex
	statsConsumer jetstream.Consumer
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
		consumers: make(map[string]jetstream.ConsumerConfig),
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

// statsMaxBytes bounds the stats stream; storeSlack is head room for
// JetStream's own files in the embedded store.
const (
	statsMaxBytes int64 = 64 << 20
	storeSlack    int64 = 16 << 20
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
		JetStreamMaxStore: cfg.MaxBytes + cfg.DeadLetterMaxBytes + statsMaxBytes + storeSlack,
		// Every subscription has a consumer on the events stream. Without
		// this the server caps a stream at 1,000 consumers, even one whose
		// MaxConsumers is -1, and subscriptions beyond that are never
		// served.
		JetStreamLimits: server.JSLimitOpts{DefaultMaxConsumers: -1},
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
			// Stores created before direct subjects existed gain the
			// second subject in place: CreateOrUpdateStream updates them.
			Subjects: []string{q.names.EventsPrefix + ".>", q.names.DirectPrefix + ".>"},
			// Interest: an event is kept until every subscription that
			// wanted it is done with it; a direct event only one
			// consumer wants, so it is kept until that one acks it.
			Retention: jetstream.InterestPolicy,
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
		{
			Name:              q.names.StatsStream,
			Description:       "Hookline per-replica delivery statistics",
			Subjects:          []string{q.names.StatsSubject},
			Retention:         jetstream.WorkQueuePolicy,
			Discard:           jetstream.DiscardOld,
			MaxAge:            statsMaxAge,
			MaxBytes:          statsMaxBytes,
			MaxMsgs:           -1,
			MaxConsumers:      -1,
			MaxMsgsPerSubject: -1,
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
	err := retryTransient(ctx, func(ctx context.Context) error {
		c, err := q.js.CreateOrUpdateConsumer(ctx, q.names.StatsStream, jetstream.ConsumerConfig{
			Durable:       statsConsumerName,
			Description:   "Status writer of the elected dispatcher replica",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       statsAckWait,
			MaxDeliver:    -1,
			MaxAckPending: 10000,
			Replicas:      q.cfg.Replicas,
		})
		if err == nil {
			q.statsMu.Lock()
			q.statsConsumer = c
			q.statsMu.Unlock()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("creating stats consumer: %w", err)
	}
	return nil
}

// retryTransient runs op until it succeeds, fails permanently or ctx ends.
// Stream and consumer creation right after a cluster forms may see "no
// responders" or "insufficient resources" until the meta leader is elected.
func retryTransient(ctx context.Context, op func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, apiTimeout)
		err := op(cctx)
		cancel()
		if err == nil || !isTransient(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
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
