// Command bench measures Hookline's data plane and control plane and prints
// one table: each figure beside a baseline measured in the same run on the
// same machine, their ratio, the goal and whether it is met. The machines
// it runs on are shared and noisy, so the ratio is what is tracked; every
// measurement is repeated and its median reported.
//
// It runs the real thing: the built manager and dispatcher binaries against
// a real kube-apiserver and etcd (test/testenv), the dispatcher's embedded
// NATS JetStream queue with fsync on every write, producers authenticated
// with ServiceAccount tokens, and receivers over loopback HTTP.
//
// Run it from the repository (make bench); -smoke runs every row with tiny
// sizes, which is what its test does. docs/benchmarks.md explains each row.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hookline/hookline/internal/queue"
)

// config holds the sizes and durations of a run.
type config struct {
	// Dir is where the run's working directory (queues, logs) is made.
	Dir string
	// Keep leaves the working directory in place.
	Keep bool
	// Runs is how often each measurement is repeated.
	Runs int
	// Duration is the length of each timed measurement (ingest, signing,
	// disk).
	Duration time.Duration
	// PayloadBytes is the size of each event's data.
	PayloadBytes int

	// Events per delivery throughput run; DeliveryConcurrency is the
	// subscription's spec.delivery.concurrency and the baseline's.
	Events, DeliveryConcurrency int
	// IngestConcurrency is how many single-event requests are in flight;
	// batches of BatchSize go BatchConcurrency at a time.
	IngestConcurrency, BatchSize, BatchConcurrency int
	// Rate and LatencyDuration shape the open-loop latency run.
	Rate            float64
	LatencyDuration time.Duration
	// Fanout is how many subscriptions one event goes to.
	Fanout int
	// IsolationSubs subscriptions of which HangFraction hang; each of
	// IsolationEvents goes to all of them.
	IsolationSubs, IsolationEvents int
	HangFraction                   float64
	// Scale is the number of subscriptions of the control-plane run;
	// Secrets is how many WebhookSecrets each namespace's subscriptions
	// share.
	Scale, Secrets int
	// StatusInterval is the dispatchers' --status-interval; StatusRate
	// events a second go to every fan-out subscription for StatusWindow.
	StatusInterval time.Duration
	StatusRate     float64
	StatusWindow   time.Duration
	// ReadyTimeout bounds each wait for subscriptions to be Ready and
	// accepted.
	ReadyTimeout time.Duration
	// Backlog events are held behind a down endpoint.
	Backlog int
	// Settle is how long the dispatcher is left alone before its memory
	// is read; DedupWait is how long after the backlog is published its
	// memory is read again, by default once the deduplication window has
	// passed.
	Settle, DedupWait time.Duration
	// DeadEvents are published while one subscription's endpoint is down
	// and DeadHealthy others get every event; DeadQueueBytes is that
	// dispatcher's --queue-max-bytes, below what the dead endpoint's
	// backlog grows to.
	DeadEvents, DeadHealthy int
	DeadQueueBytes          int64

	// Sections selects the table's sections (1-10); empty means all.
	Sections []int
	// InProcess runs the dispatchers in this process, for profiling.
	InProcess bool
	// CPUProfile, when set, receives a CPU profile of this process: of
	// ProfileSection's measurements alone when that is set, else of the
	// whole run.
	CPUProfile     string
	ProfileSection int
	// MemProfile, when set, receives a heap profile of this process taken
	// after a collection at section 8's last reading (and MemProfile
	// ".first" one at its first): with InProcess, what the dispatcher
	// still holds once the backlog is stored.
	MemProfile string
}

func defaultConfig() config {
	return config{
		Dir:                 os.TempDir(),
		Runs:                3,
		Duration:            4 * time.Second,
		PayloadBytes:        512,
		Events:              20000,
		DeliveryConcurrency: 10,
		IngestConcurrency:   64,
		BatchSize:           100,
		BatchConcurrency:    4,
		Rate:                500,
		LatencyDuration:     8 * time.Second,
		Fanout:              1000,
		IsolationSubs:       20,
		IsolationEvents:     1000,
		HangFraction:        0.1,
		Scale:               10000,
		Secrets:             4,
		StatusInterval:      10 * time.Second,
		StatusRate:          0.2,
		StatusWindow:        30 * time.Second,
		ReadyTimeout:        5 * time.Minute,
		Backlog:             100000,
		Settle:              12 * time.Second,
		DedupWait:           queue.DefaultDedupWindow + 15*time.Second,
		DeadEvents:          100000,
		DeadHealthy:         3,
		DeadQueueBytes:      64 << 20,
	}
}

// smoke shrinks c so that every row runs in seconds: enough to keep the
// harness working, not to measure anything.
func (c config) smoke() config {
	c.Runs = 1
	c.Duration = 300 * time.Millisecond
	c.Events = 50
	c.IngestConcurrency = 8
	c.BatchSize = 10
	c.BatchConcurrency = 2
	c.Rate = 50
	c.LatencyDuration = time.Second
	c.Fanout = 20
	c.IsolationSubs = 10
	c.IsolationEvents = 20
	c.Scale = 40
	c.Secrets = 2
	c.StatusInterval = time.Second
	c.StatusRate = 2
	c.StatusWindow = 2 * time.Second
	c.Backlog = 200
	c.Settle = 200 * time.Millisecond
	c.DedupWait = 0
	c.DeadEvents = 300
	c.DeadHealthy = 2
	c.DeadQueueBytes = 8 << 20
	return c
}

// lastSection is the number of the table's last section.
const lastSection = 10

func (c config) wants(section int) bool {
	return len(c.Sections) == 0 || slices.Contains(c.Sections, section)
}

func main() {
	// envtest logs through controller-runtime, which warns (with a stack)
	// when no logger is set.
	ctrllog.SetLogger(logr.Discard())
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line. With -smoke the smoke sizes are the
// defaults, which other flags still override.
func parseFlags(args []string) (config, error) {
	cfg := defaultConfig()
	fs, smoke, sections := flagSet(&cfg)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if *smoke {
		cfg = defaultConfig().smoke()
		fs, _, sections = flagSet(&cfg)
		if err := fs.Parse(args); err != nil {
			return cfg, err
		}
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for s := range strings.SplitSeq(*sections, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > lastSection {
			return cfg, fmt.Errorf("-sections: %q is not a section between 1 and %d", s, lastSection)
		}
		cfg.Sections = append(cfg.Sections, n)
	}
	return cfg, cfg.validate()
}

// flagSet binds the flags to cfg, whose values are the defaults.
func flagSet(cfg *config) (fs *flag.FlagSet, smoke *bool, sections *string) {
	fs = flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: go run ./hack/bench [flags]\n\nMeasures Hookline against same-run baselines and prints one table; see docs/benchmarks.md.")
		fs.PrintDefaults()
	}
	smoke = fs.Bool("smoke", false, "Run every row with tiny sizes, to check the harness; the figures mean nothing.")
	sections = fs.String("sections", "", "Comma-separated sections to run (1-10); empty runs all.")
	fs.StringVar(&cfg.Dir, "dir", cfg.Dir, "Directory in which the run's working directory (queues, logs) is created; its filesystem is the one measured.")
	fs.BoolVar(&cfg.Keep, "keep", cfg.Keep, "Keep the working directory (logs, queues) after the run.")
	fs.IntVar(&cfg.Runs, "runs", cfg.Runs, "Repetitions of each measurement; the median is reported.")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "Length of each timed measurement (ingest, signing, disk).")
	fs.IntVar(&cfg.PayloadBytes, "payload-bytes", cfg.PayloadBytes, "Size of each event's data.")
	fs.IntVar(&cfg.Events, "events", cfg.Events, "Events per delivery throughput run.")
	fs.IntVar(&cfg.DeliveryConcurrency, "delivery-concurrency", cfg.DeliveryConcurrency, "The throughput subscription's spec.delivery.concurrency, and the baseline's.")
	fs.IntVar(&cfg.IngestConcurrency, "ingest-concurrency", cfg.IngestConcurrency, "Single-event ingest requests in flight.")
	fs.IntVar(&cfg.BatchSize, "batch-size", cfg.BatchSize, "Events per batch.")
	fs.IntVar(&cfg.BatchConcurrency, "batch-concurrency", cfg.BatchConcurrency, "Batch requests in flight.")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "Events per second of the open-loop latency run.")
	fs.DurationVar(&cfg.LatencyDuration, "latency-duration", cfg.LatencyDuration, "Length of each latency run.")
	fs.IntVar(&cfg.Fanout, "fanout", cfg.Fanout, "Subscriptions one event fans out to; also the first control-plane size.")
	fs.IntVar(&cfg.IsolationSubs, "isolation-subscriptions", cfg.IsolationSubs, "Subscriptions of the isolation run.")
	fs.IntVar(&cfg.IsolationEvents, "isolation-events", cfg.IsolationEvents, "Events per isolation run, each to every subscription.")
	fs.Float64Var(&cfg.HangFraction, "hang-fraction", cfg.HangFraction, "Share of the isolation run's subscriptions whose endpoint hangs.")
	fs.IntVar(&cfg.Scale, "scale", cfg.Scale, "Subscriptions of the control-plane run.")
	fs.IntVar(&cfg.Secrets, "secrets", cfg.Secrets, "WebhookSecrets the subscriptions of a namespace share.")
	fs.DurationVar(&cfg.StatusInterval, "status-interval", cfg.StatusInterval, "The dispatchers' --status-interval.")
	fs.Float64Var(&cfg.StatusRate, "status-rate", cfg.StatusRate, "Events per second to every fan-out subscription while status writes are counted.")
	fs.DurationVar(&cfg.StatusWindow, "status-window", cfg.StatusWindow, "How long status writes are counted.")
	fs.DurationVar(&cfg.ReadyTimeout, "ready-timeout", cfg.ReadyTimeout, "Bound of each wait for the control-plane run's subscriptions to be Ready and accepted.")
	fs.IntVar(&cfg.Backlog, "backlog", cfg.Backlog, "Events held behind a down endpoint in the memory run.")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "Pause before a process's memory is read.")
	fs.IntVar(&cfg.DeadEvents, "dead-events", cfg.DeadEvents, "Events published per run of the dead endpoint section, all of which back up for the subscription whose endpoint is down.")
	fs.IntVar(&cfg.DeadHealthy, "dead-healthy", cfg.DeadHealthy, "Subscriptions with a healthy endpoint beside the dead one.")
	fs.Int64Var(&cfg.DeadQueueBytes, "dead-queue-bytes", cfg.DeadQueueBytes, "--queue-max-bytes of the dead endpoint section's dispatcher: less than the dead endpoint's backlog.")
	fs.DurationVar(&cfg.DedupWait, "dedup-wait", cfg.DedupWait, "When the backlog's memory is read again after publishing it: past the dispatcher's 2-minute deduplication window by default.")
	fs.BoolVar(&cfg.InProcess, "in-process", cfg.InProcess, "Run the dispatchers inside this process, so -cpuprofile covers them (figures then share the process with the load).")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", cfg.CPUProfile, "Write a CPU profile of this process to this file.")
	fs.StringVar(&cfg.MemProfile, "memprofile", cfg.MemProfile, "Write a heap profile of this process, after a collection, at the last reading of section 8, and the first reading's to the same name with .first added (use with -in-process).")
	fs.IntVar(&cfg.ProfileSection, "profile-section", cfg.ProfileSection, "With -cpuprofile, profile only this section's measurements (1-10), not the set-up around them.")
	return fs, smoke, sections
}

func (c config) validate() error {
	positive := map[string]int{"runs": c.Runs, "payload-bytes": c.PayloadBytes, "events": c.Events,
		"delivery-concurrency": c.DeliveryConcurrency, "ingest-concurrency": c.IngestConcurrency, "batch-size": c.BatchSize,
		"batch-concurrency": c.BatchConcurrency, "fanout": c.Fanout, "isolation-subscriptions": c.IsolationSubs,
		"isolation-events": c.IsolationEvents, "scale": c.Scale, "secrets": c.Secrets, "backlog": c.Backlog,
		"dead-events": c.DeadEvents, "dead-healthy": c.DeadHealthy}
	for name, v := range positive {
		if v <= 0 {
			return fmt.Errorf("-%s must be positive, got %d", name, v)
		}
	}
	switch {
	case c.DeliveryConcurrency > 1000:
		return fmt.Errorf("-delivery-concurrency is at most 1000 (the API's bound), got %d", c.DeliveryConcurrency)
	case c.BatchSize > 1000:
		return fmt.Errorf("-batch-size is at most 1000 (the ingest API's bound), got %d", c.BatchSize)
	case c.Rate <= 0 || c.StatusRate <= 0:
		return errors.New("-rate and -status-rate must be positive")
	case c.HangFraction <= 0 || c.HangFraction >= 1:
		return fmt.Errorf("-hang-fraction must be between 0 and 1, got %g", c.HangFraction)
	case c.IsolationSubs < 2:
		return errors.New("-isolation-subscriptions must be at least 2: some hang, some do not")
	case c.ProfileSection < 0 || c.ProfileSection > lastSection || (c.ProfileSection > 0 && c.CPUProfile == ""):
		return fmt.Errorf("-profile-section takes a section between 1 and %d, and -cpuprofile", lastSection)
	case c.DeadQueueBytes <= 0:
		return fmt.Errorf("-dead-queue-bytes must be positive, got %d", c.DeadQueueBytes)
	case c.Duration <= 0 || c.LatencyDuration <= 0 || c.StatusWindow <= 0 || c.StatusInterval <= 0 || c.ReadyTimeout <= 0:
		return errors.New("durations must be positive")
	}
	return nil
}
