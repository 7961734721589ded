package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// Event types of sections 9 and 10.
const (
	typeStored = "bench.stored.created"
	typeDead   = "bench.dead.created"
)

// refusalStall is how long the dead endpoint section's producers keep
// sending batches that ingest refuses before they give up: far longer than
// any purge or checkpoint takes, so it only ends a run in which the store
// stays full.
const refusalStall = time.Minute

// storedBacklog is section 9, with a dispatcher of its own: cfg.Events
// events stored for a suspended subscription, then delivered once it is
// resumed.
func (b *bench) storedBacklog(ctx context.Context) error {
	cfg := b.cfg
	b.step("Starting dispatcher stored")
	d, err := b.cluster.startDispatcher(ctx, "stored", cfg.StatusInterval, 0)
	if err != nil {
		return err
	}
	defer b.stopDispatcher(d)
	ns, err := b.cluster.prepareNamespace(ctx, "stored", cfg.Secrets)
	if err != nil {
		return err
	}
	sub := ns.subscription("stored", d.name, b.receiver.url+"/"+groupStored+"/0", 0, "bench.stored.*")
	sub.Spec.Delivery.Concurrency = int32(cfg.DeliveryConcurrency)
	sub.Spec.Suspend = true
	if err := b.createAccepted(ctx, ns.name, []client.Object{sub}); err != nil {
		return err
	}
	b.step("Section 9: delivering a stored backlog")
	b.add(b.profiled(9, func() []row { return one(b.storedBacklogRuns(ctx, d, ns, sub)) })...)
	return nil
}

// storedBacklogRuns publishes cfg.Events events while sub is suspended,
// resumes it and times from the resume until the receiver has them all;
// the baseline is a plain client posting the same bodies to the same
// receiver with the same concurrency.
func (b *bench) storedBacklogRuns(ctx context.Context, d *dispatcherProc, ns *benchNamespace, sub *hooklinev1.WebhookSubscription) row {
	cfg := b.cfg
	name := fmt.Sprintf("Delivering a stored backlog: %d events to 1 subscription once resumed, concurrency %d", cfg.Events, cfg.DeliveryConcurrency)
	p := ns.producer(d, cfg.BatchConcurrency)
	client := newHTTPClient(cfg.DeliveryConcurrency)
	counter, baseCounter := b.receiver.counter(groupStored), b.receiver.counter(groupStoredBase)
	var figures, baselines []float64
	for r := range cfg.Runs {
		if r > 0 {
			if err := b.suspend(ctx, ns.name, []string{sub.Name}, true); err != nil {
				return failedRow(name, err)
			}
		}
		// The dispatcher reports the suspension of the current generation
		// once it holds the subscription's deliveries.
		if err := poll(ctx, 2*time.Minute+3*cfg.StatusInterval, 100*time.Millisecond, "the subscription to be suspended", func(ctx context.Context) error {
			return b.cluster.hasCondition(ctx, sub, hooklinev1.ConditionSuspended)
		}); err != nil {
			return failedRow(name, err)
		}
		evs := events(cfg.Events, fmt.Sprintf("stored-%d", r), typeStored, cfg.PayloadBytes)
		before := counter.Load()
		if err := p.publishBatches(ctx, evs, cfg.BatchSize, cfg.BatchConcurrency); err != nil {
			return failedRow(name, err)
		}
		if n := counter.Load() - before; n > 0 {
			return failedRow(name, fmt.Errorf("%d events were delivered while the subscription was suspended", n))
		}
		want := before + int64(len(evs))
		start := time.Now()
		if err := b.suspend(ctx, ns.name, []string{sub.Name}, false); err != nil {
			return failedRow(name, err)
		}
		at, err := waitCount(ctx, counter, want, deliveryTimeout(len(evs)))
		if err != nil {
			return failedRow(name, err)
		}
		figures = append(figures, float64(len(evs))/at.Sub(start).Seconds())

		bodies, err := deliveredBodies(evs)
		if err != nil {
			return failedRow(name, err)
		}
		url := b.receiver.url + "/" + groupStoredBase + "/0"
		want = baseCounter.Load() + int64(len(evs))
		start = time.Now()
		if err := parallel(ctx, len(evs), cfg.DeliveryConcurrency, func(ctx context.Context, i int) error {
			return plainPost(ctx, client, url, evs[i].ID, bodies[i])
		}); err != nil {
			return failedRow(name, err)
		}
		elapsed := time.Since(start)
		if baseCounter.Load() < want {
			return failedRow(name, errors.New("the receiver counted fewer baseline requests than were answered"))
		}
		baselines = append(baselines, float64(len(evs))/elapsed.Seconds())
	}
	return newRow(name, perSecond, figures, fmt.Sprintf("plain Go client, %d in flight", cfg.DeliveryConcurrency), baselines, ratioAtLeast(0.75))
}

// deadEndpoint is section 10, with a dispatcher of its own whose events
// stream is bounded by cfg.DeadQueueBytes: cfg.DeadHealthy subscriptions
// get every event, first alone, then beside a subscription whose endpoint
// is down.
func (b *bench) deadEndpoint(ctx context.Context) error {
	cfg := b.cfg
	b.step("Starting dispatcher deadend")
	d, err := b.cluster.startDispatcher(ctx, "deadend", cfg.StatusInterval, cfg.DeadQueueBytes)
	if err != nil {
		return err
	}
	defer b.stopDispatcher(d)
	ns, err := b.cluster.prepareNamespace(ctx, "deadend", cfg.Secrets)
	if err != nil {
		return err
	}
	var healthy []client.Object
	for i := range cfg.DeadHealthy {
		healthy = append(healthy, ns.subscription(fmt.Sprintf("ok-%d", i), d.name, fmt.Sprintf("%s/%s/%d", b.receiver.url, groupDeadOK, i), i, "bench.dead.*"))
	}
	if err := b.createAccepted(ctx, ns.name, healthy); err != nil {
		return err
	}
	b.step("Section 10: a dead endpoint")
	b.add(b.profiled(10, func() []row { return b.deadEndpointRuns(ctx, d, ns) })...)
	return nil
}

// deadRun is what one run of section 10 measured.
type deadRun struct {
	// delivery is healthy deliveries per second from the first publish to
	// the last arrival; ingest is events stored per second until the last
	// batch was stored. Both are 0 when the producers gave up, some events
	// never stored.
	delivery, ingest float64
	// peak is the most the events stream held, as the dispatcher reported
	// it every 250 ms.
	peak float64
	retried
}

// deadEndpointRuns publishes cfg.DeadEvents events per run, in batches
// that are sent again while ingest refuses them, to the healthy
// subscriptions: cfg.Runs times alone (the baseline), then as often with a
// subscription whose endpoint is down (a closed port) also getting every
// event, so that its backlog grows by cfg.DeadEvents each run, past the
// events stream's bound. Rows: the healthy subscriptions' delivery rate
// and the ingest rate against the runs without the dead endpoint (0 for a
// run in which ingest refused events for good), and the most the events
// stream held against its bound.
func (b *bench) deadEndpointRuns(ctx context.Context, d *dispatcherProc, ns *benchNamespace) []row {
	cfg := b.cfg
	size := fmt.Sprintf("%s events, %d healthy subscriptions", thousands(float64(cfg.DeadEvents)), cfg.DeadHealthy)
	names := []string{
		"Dead endpoint: healthy deliveries/s, 1 endpoint down, " + size,
		"Dead endpoint: ingest, batches, 1 endpoint down, " + size,
		fmt.Sprintf("Dead endpoint: events stream's peak size, its bound %.0f MiB, 1 endpoint down", float64(cfg.DeadQueueBytes)/(1<<20)),
	}
	fail := func(err error) []row { return failedRows(names, err) }
	p := ns.producer(d, cfg.BatchConcurrency)
	counter := b.receiver.counter(groupDeadOK)
	measure := func(label string) (deadRun, error) {
		var run deadRun
		evs := events(cfg.DeadEvents, label, typeDead, cfg.PayloadBytes)
		stopSampling := b.sampleMetric(ctx, d, "hookline_queue_stored_bytes", &run.peak)
		before := counter.Load()
		start := time.Now()
		var err error
		run.retried, err = p.publishRetrying(ctx, evs, cfg.BatchSize, cfg.BatchConcurrency, refusalStall)
		published := time.Since(start)
		if err != nil {
			stopSampling()
			return run, err
		}
		// Each stored event reaches every healthy subscription; events of
		// a batch refused in part may arrive too.
		want := before + int64(run.stored*cfg.DeadHealthy)
		at, err := waitCount(ctx, counter, want, deliveryTimeout(run.stored*cfg.DeadHealthy))
		stopSampling()
		if err != nil {
			return run, err
		}
		// Events refused for good never reach anyone: such a run has no
		// rate to show, however fast the rest went.
		if !run.gaveUp {
			run.delivery = float64(want-before) / at.Sub(start).Seconds()
			run.ingest = float64(run.stored) / published.Seconds()
		}
		return run, nil
	}
	report := func(label string, runs []deadRun) {
		for i, r := range runs {
			line := fmt.Sprintf("Dead endpoint, run %d %s: %d of %d events stored, ingest refused %d batches",
				i+1, label, r.stored, cfg.DeadEvents, r.refusals)
			if r.lastRefusal != nil {
				line += fmt.Sprintf(" (last: %v)", r.lastRefusal)
			}
			if r.gaveUp {
				line += fmt.Sprintf("; the producers gave up after %s without a batch stored", refusalStall)
			}
			b.detail("%s; events stream peak %.2f MiB", line, r.peak/(1<<20))
		}
	}

	var alone, beside []deadRun
	for r := range cfg.Runs {
		run, err := measure(fmt.Sprintf("dead-alone-%d", r))
		if err != nil {
			return fail(err)
		}
		alone = append(alone, run)
	}
	report("without the dead endpoint", alone)
	down, err := closedPort()
	if err != nil {
		return fail(err)
	}
	dead := ns.subscription("down", d.name, "http://"+down+"/down", 0, "bench.dead.*")
	if err := b.createAccepted(ctx, ns.name, []client.Object{dead}); err != nil {
		return fail(err)
	}
	for r := range cfg.Runs {
		run, err := measure(fmt.Sprintf("dead-beside-%d", r))
		if err != nil {
			return fail(err)
		}
		beside = append(beside, run)
	}
	report("beside the dead endpoint", beside)
	bound, err := d.metric(ctx, "hookline_queue_max_bytes")
	if err != nil {
		return fail(err)
	}
	b.detail("Dead endpoint: %s", b.deadStatus(ctx, dead, d.dataDir))

	pick := func(runs []deadRun, f func(deadRun) float64) []float64 {
		out := make([]float64, len(runs))
		for i, r := range runs {
			out[i] = f(r)
		}
		return out
	}
	peak := 0.0
	for _, r := range beside {
		peak = max(peak, r.peak)
	}
	return []row{
		newRow(names[0], perSecond, pick(beside, func(r deadRun) float64 { return r.delivery }), "same, no endpoint down",
			pick(alone, func(r deadRun) float64 { return r.delivery }), ratioAtLeast(0.9)),
		newRow(names[1], perSecond, pick(beside, func(r deadRun) float64 { return r.ingest }), "same, no endpoint down",
			pick(alone, func(r deadRun) float64 { return r.ingest }), ratioAtLeast(0.9)),
		newRow(names[2], mebibytes, []float64{peak}, "the bound (--queue-max-bytes)", []float64{bound}, ratioAtMost(1)),
	}
}

// sampleMetric reads a gauge of d every 250 ms, keeping its largest value
// in peak, until the returned function is called.
func (b *bench) sampleMetric(ctx context.Context, d *dispatcherProc, name string, peak *float64) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	read := func() {
		if v, err := d.metric(ctx, name); err == nil {
			mu.Lock()
			*peak = max(*peak, v)
			mu.Unlock()
		}
	}
	wg.Go(func() {
		for {
			read()
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		read()
	}
}

// deadStatus describes what the dead endpoint's subscription reports, and
// what the dispatcher's queue holds on disk.
func (b *bench) deadStatus(ctx context.Context, sub *hooklinev1.WebhookSubscription, dataDir string) string {
	text := ""
	if err := b.cluster.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
		text = fmt.Sprintf("reading the subscription: %v", err)
	} else {
		text = "the subscription's status has no delivery block"
		if st := sub.Status.Delivery; st != nil {
			text = fmt.Sprintf("the subscription reports a backlog of %d, %d dead-lettered, %d failed attempts",
				st.Backlog, st.DeadLettered, st.Failed)
		}
		if c := meta.FindStatusCondition(sub.Status.Conditions, hooklinev1.ConditionSuspended); c != nil {
			text += fmt.Sprintf(", Suspended %s (%s)", c.Status, c.Reason)
		}
	}
	if size, err := treeBytes(dataDir); err == nil {
		text += fmt.Sprintf("; the queue's files take %.1f MiB", float64(size)/(1<<20))
	}
	return text
}

// treeBytes is the size of the files under dir.
func treeBytes(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		total += info.Size()
		return nil
	})
	return total, err
}
