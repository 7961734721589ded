package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/hookline/hookline/internal/queue"
)

// jetStreamBaseline is the ingest row's baseline: an embedded JetStream
// server configured as the dispatcher's (file store, fsync on every write),
// an events stream with the same settings, and one paused consumer holding
// interest in every event, as a suspended subscription does (an
// interest-retention stream skips storing events nobody wants).
type jetStreamBaseline struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

const (
	baselineStream  = "BASELINE_EVENTS"
	baselineSubject = "bench.events"
)

func startJetStream(ctx context.Context, dir string) (*jetStreamBaseline, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the baseline store: %w", err)
	}
	maxBytes, err := streamBound(dir)
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{
		ServerName:        "hookline-bench-baseline",
		JetStream:         true,
		StoreDir:          dir,
		SyncAlways:        true,
		DontListen:        true,
		NoSigs:            true,
		NoLog:             true,
		JetStreamMaxStore: maxBytes + 64<<20,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the baseline NATS server: %w", err)
	}
	srv.Start()
	b := &jetStreamBaseline{srv: srv}
	if !srv.ReadyForConnections(time.Minute) {
		b.close()
		return nil, errors.New("the baseline NATS server did not become ready")
	}
	if b.nc, err = nats.Connect("", nats.InProcessServer(srv)); err != nil {
		b.close()
		return nil, fmt.Errorf("connecting to the baseline NATS server: %w", err)
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		b.close()
		return nil, fmt.Errorf("creating the baseline JetStream context: %w", err)
	}
	_, err = b.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:               baselineStream,
		Subjects:           []string{baselineSubject + ".>"},
		Retention:          jetstream.InterestPolicy,
		Discard:            jetstream.DiscardNew,
		MaxBytes:           maxBytes,
		MaxAge:             queue.DefaultMaxAge,
		MaxMsgs:            -1,
		MaxConsumers:       -1,
		MaxMsgsPerSubject:  -1,
		Duplicates:         queue.DefaultDedupWindow,
		AllowAtomicPublish: true,
		Storage:            jetstream.FileStorage,
		Replicas:           1,
	})
	if err != nil {
		b.close()
		return nil, fmt.Errorf("creating the baseline stream: %w", err)
	}
	paused := time.Date(2200, time.January, 1, 0, 0, 0, 0, time.UTC)
	_, err = b.js.CreateConsumer(ctx, baselineStream, jetstream.ConsumerConfig{
		Durable:       "held",
		AckPolicy:     jetstream.AckExplicitPolicy,
		FilterSubject: baselineSubject + ".>",
		MaxAckPending: 10,
		PauseUntil:    &paused,
	})
	if err != nil {
		b.close()
		return nil, fmt.Errorf("creating the baseline consumer: %w", err)
	}
	return b, nil
}

// streamBound is the dispatcher's default bound of its events stream: 70%
// of the queue's filesystem.
func streamBound(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("measuring the queue's filesystem: %w", err)
	}
	return int64(float64(st.Blocks) * float64(st.Bsize) * 0.7), nil
}

func (b *jetStreamBaseline) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

// message is ev stored as the dispatcher's queue stores it: the same
// subject layout, headers and data.
func message(ns string, ev event, at time.Time) *nats.Msg {
	m := nats.NewMsg(baselineSubject + "." + ns + "." + ev.Type)
	m.Data = ev.Data
	m.Header.Set(queue.HeaderMsgID, ns+"/"+ev.ID)
	m.Header.Set(queue.HeaderEventID, ev.ID)
	m.Header.Set(queue.HeaderEventType, ev.Type)
	m.Header.Set(queue.HeaderEventTime, at.UTC().Format(time.RFC3339Nano))
	m.Header.Set(queue.HeaderEventNamespace, ns)
	return m
}

// publish stores one event and waits for its acknowledgement.
func (b *jetStreamBaseline) publish(ctx context.Context, ns string, ev event) error {
	ack, err := b.js.PublishMsg(ctx, message(ns, ev, time.Now()))
	if err != nil {
		return fmt.Errorf("publishing to the baseline stream: %w", err)
	}
	if ack.Duplicate {
		return fmt.Errorf("event %s was a duplicate", ev.ID)
	}
	return nil
}

// publishBatch stores evs as one atomic batch: every message but the last
// published plainly, the last, with the commit header, as a request whose
// reply acknowledges the batch.
func (b *jetStreamBaseline) publishBatch(ctx context.Context, ns string, evs []event) error {
	id := nuid.Next()
	now := time.Now()
	for i, ev := range evs {
		m := message(ns, ev, now)
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(evs)-1 {
			if err := b.nc.PublishMsg(m); err != nil {
				return fmt.Errorf("publishing a batch message: %w", err)
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := b.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return fmt.Errorf("committing a batch: %w", err)
		}
		var ack struct {
			Error *jetstream.APIError `json:"error"`
			Count int                 `json:"count"`
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return fmt.Errorf("decoding a batch acknowledgement: %w", err)
		}
		if ack.Error != nil {
			return fmt.Errorf("committing a batch: %w", ack.Error)
		}
		if ack.Count != len(evs) {
			return fmt.Errorf("a batch of %d stored %d", len(evs), ack.Count)
		}
	}
	return nil
}

// forDuration runs do(ctx, 0), do(ctx, 1), ... on concurrency goroutines
// until d has passed, and returns how many calls completed and how long
// they took in all. It stops at the first error.
func forDuration(ctx context.Context, d time.Duration, concurrency int, do func(context.Context, int) error) (int, time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	deadline := start.Add(d)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if err := do(ctx, int(next.Add(1)-1)); err != nil {
					cancel(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return 0, elapsed, err
	}
	return int(done.Load()), elapsed, nil
}

// syncWriteRate measures the filesystem of dir: appends of size bytes, each
// followed by fsync, for d. It is the ceiling for durable writes that are
// not batched.
func syncWriteRate(dir string, size int, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "sync-rate-")
	if err != nil {
		return 0, fmt.Errorf("creating the sync test file: %w", err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	record := make([]byte, size)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := f.Write(record); err != nil {
			return 0, fmt.Errorf("writing to %s: %w", filepath.Base(f.Name()), err)
		}
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("syncing %s: %w", filepath.Base(f.Name()), err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
