package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
)

// Event types of the data-plane sections; each subscription selects one.
const (
	typeThroughput = "bench.thru.created"
	typeIngest     = "bench.ingest.created"
	typeLatency    = "bench.lat.created"
	typeIsolation  = "bench.iso.created"
	typeBacklog    = "bench.backlog.created"
)

// dataPlane runs sections 2, 1, 3, 5 and 8 against the dispatcher "bench".
func (b *bench) dataPlane(ctx context.Context) (err error) {
	cfg := b.cfg
	b.step("Starting dispatcher bench")
	d, err := b.cluster.startDispatcher(ctx, "bench", cfg.StatusInterval, 0)
	if err != nil {
		return err
	}
	defer b.stopDispatcher(d)
	ns, err := b.cluster.prepareNamespace(ctx, "bench", cfg.Secrets)
	if err != nil {
		return err
	}
	rcv := b.receiver.url
	var subs []client.Object
	if cfg.wants(1) {
		s := ns.subscription("throughput", d.name, rcv+"/"+groupThroughput+"/0", 0, "bench.thru.*")
		s.Spec.Delivery.Concurrency = int32(cfg.DeliveryConcurrency)
		subs = append(subs, s)
	}
	if cfg.wants(2) {
		// Holds interest in the ingested events without delivering them,
		// as the baseline's paused consumer does.
		s := ns.subscription("ingest-sink", d.name, rcv+"/"+groupHang+"/sink", 0, "bench.ingest.*")
		s.Spec.Suspend = true
		subs = append(subs, s)
	}
	if cfg.wants(3) {
		subs = append(subs, ns.subscription("latency", d.name, rcv+"/"+groupLatency+"/0", 0, "bench.lat.*"))
	}
	var healthy, hanging []string
	if cfg.wants(5) {
		nHang := max(1, int(math.Round(float64(cfg.IsolationSubs)*cfg.HangFraction)))
		for i := range cfg.IsolationSubs {
			if i < nHang {
				s := ns.subscription(fmt.Sprintf("iso-hang-%d", i), d.name, fmt.Sprintf("%s/%s/%d", rcv, groupHang, i), i, "bench.iso.*")
				s.Spec.Delivery.Timeout = &metav1.Duration{Duration: time.Second}
				s.Spec.Suspend = true
				subs = append(subs, s)
				hanging = append(hanging, s.Name)
				continue
			}
			s := ns.subscription(fmt.Sprintf("iso-ok-%d", i), d.name, fmt.Sprintf("%s/%s/%d", rcv, groupIsolation, i), i, "bench.iso.*")
			subs = append(subs, s)
			healthy = append(healthy, s.Name)
		}
	}
	if err := b.createAccepted(ctx, ns.name, subs); err != nil {
		return err
	}
	if cfg.wants(2) {
		b.step("Section 2: ingest")
		b.add(b.profiled(2, func() []row { return b.ingest(ctx, d, ns) })...)
		if err := b.cluster.deleteSubscriptions(ctx, ns.name, "ingest-sink"); err != nil {
			return err
		}
	}
	if cfg.wants(1) {
		b.step("Section 1: delivery throughput")
		b.add(b.profiled(1, func() []row { return one(b.throughput(ctx, d, ns)) })...)
	}
	if cfg.wants(3) {
		b.step("Section 3: latency")
		b.add(b.profiled(3, func() []row { return b.latency(ctx, d, ns) })...)
	}
	if cfg.wants(5) {
		b.step("Section 5: isolation")
		b.add(b.profiled(5, func() []row { return one(b.isolation(ctx, d, ns, healthy, hanging)) })...)
		if err := b.cluster.deleteSubscriptions(ctx, ns.name, hanging...); err != nil {
			return err
		}
	}
	if cfg.wants(8) {
		b.step("Section 8: memory under a backlog")
		b.add(b.profiled(8, func() []row { return one(b.backlogMemory(ctx, d, ns)) })...)
	}
	return nil
}

// createAccepted creates subscriptions of ns and waits until the dispatcher
// has accepted every one, so that no event is published before its
// consumer exists.
func (b *bench) createAccepted(ctx context.Context, ns string, subs []client.Object) error {
	if len(subs) == 0 {
		return nil
	}
	w, err := b.cluster.watchConditions(ctx, ns, hooklinev1.ConditionAccepted)
	if err != nil {
		return err
	}
	defer w.stop()
	before := int(w.trues.Load())
	if err := b.cluster.createAll(ctx, subs, 16); err != nil {
		return err
	}
	_, err = w.wait(ctx, before+len(subs), 3*time.Minute+3*b.cfg.StatusInterval)
	return err
}

// ingest is section 2: events answered 202 per second, single and in
// batches, against JetStream alone, and the disk's sync write rate.
func (b *bench) ingest(ctx context.Context, d *dispatcherProc, ns *benchNamespace) []row {
	cfg := b.cfg
	singleName := fmt.Sprintf("Ingest, single events, %d requests in flight", cfg.IngestConcurrency)
	batchName := fmt.Sprintf("Ingest, batches of %d, %d requests in flight", cfg.BatchSize, cfg.BatchConcurrency)
	syncName := "Ingest, single events, against the disk's sync write rate"
	fail := func(err error) []row {
		return []row{failedRow(singleName, err), failedRow(batchName, err), failedRow(syncName, err)}
	}
	var disk []float64
	for range cfg.Runs {
		rate, err := syncWriteRate(b.dir, 512, cfg.Duration)
		if err != nil {
			return fail(err)
		}
		disk = append(disk, rate)
	}
	js, err := startJetStream(ctx, filepath.Join(b.dir, "baseline-jetstream"))
	if err != nil {
		return fail(err)
	}
	defer js.close()
	singles := ns.producer(d, cfg.IngestConcurrency)
	batches := ns.producer(d, cfg.BatchConcurrency)
	var single, singleBase, batch, batchBase []float64
	for r := range cfg.Runs {
		measure := func(kind string, concurrency, perCall int, do func(context.Context, int) error) (float64, error) {
			n, elapsed, err := forDuration(ctx, cfg.Duration, concurrency, do)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", kind, err)
			}
			return float64(n*perCall) / elapsed.Seconds(), nil
		}
		single1, err := measure("single-event ingest", cfg.IngestConcurrency, 1, func(ctx context.Context, i int) error {
			return singles.single(ctx, newEvent(fmt.Sprintf("ingest-s%d", r), i, typeIngest, cfg.PayloadBytes))
		})
		if err != nil {
			return fail(err)
		}
		single2, err := measure("JetStream single publishes", cfg.IngestConcurrency, 1, func(ctx context.Context, i int) error {
			return js.publish(ctx, ns.name, newEvent(fmt.Sprintf("base-s%d", r), i, typeIngest, cfg.PayloadBytes))
		})
		if err != nil {
			return fail(err)
		}
		batch1, err := measure("batch ingest", cfg.BatchConcurrency, cfg.BatchSize, func(ctx context.Context, i int) error {
			return batches.batch(ctx, events(cfg.BatchSize, fmt.Sprintf("ingest-b%d-%d", r, i), typeIngest, cfg.PayloadBytes))
		})
		if err != nil {
			return fail(err)
		}
		batch2, err := measure("JetStream atomic batches", cfg.BatchConcurrency, cfg.BatchSize, func(ctx context.Context, i int) error {
			return js.publishBatch(ctx, ns.name, events(cfg.BatchSize, fmt.Sprintf("base-b%d-%d", r, i), typeIngest, cfg.PayloadBytes))
		})
		if err != nil {
			return fail(err)
		}
		single, singleBase = append(single, single1), append(singleBase, single2)
		batch, batchBase = append(batch, batch1), append(batchBase, batch2)
	}
	b.detail("Disk sync writes (512 B append + fsync, %s each): %s", cfg.Duration, runsText(disk, perSecond))
	return []row{
		newRow(singleName, perSecond, single, fmt.Sprintf("JetStream single publishes, %d in flight", cfg.IngestConcurrency), singleBase, goal{}),
		newRow(batchName, perSecond, batch, fmt.Sprintf("JetStream atomic batches of %d, %d in flight", cfg.BatchSize, cfg.BatchConcurrency), batchBase, ratioAtLeast(0.8)),
		newRow(syncName, perSecond, single, "512 B writes, each fsynced", disk, ratioAbove(1)),
	}
}

// deliveredBodies are the bodies the dispatcher delivers for evs, for the
// baselines to post.
func deliveredBodies(evs []event) ([][]byte, error) {
	now := time.Now()
	out := make([][]byte, len(evs))
	for i, ev := range evs {
		body, err := delivery.Body(delivery.Message{ID: ev.ID, Type: ev.Type, Time: now, Data: ev.Data})
		if err != nil {
			return nil, err
		}
		out[i] = body
	}
	return out, nil
}

// deliveryTimeout bounds the wait for n deliveries: generous, since the
// machine is shared.
func deliveryTimeout(n int) time.Duration {
	return 2*time.Minute + time.Duration(n)*10*time.Millisecond
}

// throughput is section 1: events published in batches and delivered to
// one subscription, against a plain client posting the same bodies with the
// same concurrency.
func (b *bench) throughput(ctx context.Context, d *dispatcherProc, ns *benchNamespace) row {
	cfg := b.cfg
	name := fmt.Sprintf("Delivery throughput, end to end: %d events to 1 subscription, concurrency %d", cfg.Events, cfg.DeliveryConcurrency)
	p := ns.producer(d, cfg.BatchConcurrency)
	client := newHTTPClient(cfg.DeliveryConcurrency)
	counter, baseCounter := b.receiver.counter(groupThroughput), b.receiver.counter(groupThroughputBase)
	var figures, baselines []float64
	for r := range cfg.Runs {
		evs := events(cfg.Events, fmt.Sprintf("thru-%d", r), typeThroughput, cfg.PayloadBytes)
		want := counter.Load() + int64(len(evs))
		start := time.Now()
		if err := p.publishBatches(ctx, evs, cfg.BatchSize, cfg.BatchConcurrency); err != nil {
			return failedRow(name, err)
		}
		published, deliveredThen := time.Since(start), counter.Load()-(want-int64(len(evs)))
		at, err := waitCount(ctx, counter, want, deliveryTimeout(len(evs)))
		if err != nil {
			return failedRow(name, err)
		}
		figures = append(figures, float64(len(evs))/at.Sub(start).Seconds())
		b.detail("Throughput run %d: all %d events answered 202 after %s, when %d were delivered; the last delivered after %s",
			r+1, len(evs), published.Round(time.Millisecond), deliveredThen, at.Sub(start).Round(time.Millisecond))

		bodies, err := deliveredBodies(evs)
		if err != nil {
			return failedRow(name, err)
		}
		url := b.receiver.url + "/" + groupThroughputBase + "/0"
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
	return newRow(name, perSecond, figures, fmt.Sprintf("plain Go client, %d in flight", cfg.DeliveryConcurrency), baselines, ratioAtLeast(0.6))
}

// latency is section 3: single events sent open loop at a fixed rate; each
// one's latency runs from just before its POST to its arrival at the
// receiver. The baseline posts the delivered bodies to the receiver at the
// same rate.
func (b *bench) latency(ctx context.Context, d *dispatcherProc, ns *benchNamespace) []row {
	cfg := b.cfg
	n := max(1, int(cfg.Rate*cfg.LatencyDuration.Seconds()))
	title := fmt.Sprintf("Latency ingest to delivered, %s events/s open loop", thousands(cfg.Rate))
	names := []string{title + ", p50", title + ", p99", title + ", p99.9"}
	goals := []goal{{}, figureBelow(0.025), {}}
	p := ns.producer(d, 64)
	client := newHTTPClient(64)
	figures, baselines := make([][]float64, 3), make([][]float64, 3)
	for r := range cfg.Runs {
		evs := events(n, fmt.Sprintf("lat-%d", r), typeLatency, cfg.PayloadBytes)
		got, answered, err := b.openLoopLatency(ctx, groupLatency, evs, func(ctx context.Context, i int) error { return p.single(ctx, evs[i]) })
		if err != nil {
			return failedRows(names, err)
		}
		bodies, err := deliveredBodies(evs)
		if err != nil {
			return failedRows(names, err)
		}
		url := b.receiver.url + "/" + groupLatencyBase + "/0"
		base, _, err := b.openLoopLatency(ctx, groupLatencyBase, evs, func(ctx context.Context, i int) error {
			return plainPost(ctx, client, url, evs[i].ID, bodies[i])
		})
		if err != nil {
			return failedRows(names, err)
		}
		slices.Sort(answered)
		b.detail("Latency run %d: ingest answered 202 after p50 %s, p99 %s", r+1,
			percentile(answered, 50).Round(10*time.Microsecond), percentile(answered, 99).Round(10*time.Microsecond))
		for i, q := range []float64{50, 99, 99.9} {
			figures[i] = append(figures[i], percentile(got, q).Seconds())
			baselines[i] = append(baselines[i], percentile(base, q).Seconds())
		}
	}
	var rows []row
	for i := range names {
		rows = append(rows, newRow(names[i], duration, figures[i], "plain POST at the same rate", baselines[i], goals[i]))
	}
	b.detail("Latency runs of %d events each; p99 by run: %s (baseline %s)", n, runsText(figures[1], duration), runsText(baselines[1], duration))
	return rows
}

func failedRows(names []string, err error) []row {
	rows := make([]row, len(names))
	for i, n := range names {
		rows[i] = failedRow(n, err)
	}
	return rows
}

// openLoopLatency sends evs with send at the configured rate and returns
// their latencies to group, sorted, and how long each send took (for the
// ingest API, until it answered that the event is stored), unsorted.
func (b *bench) openLoopLatency(ctx context.Context, group string, evs []event, send func(context.Context, int) error) (lat, sends []time.Duration, err error) {
	b.receiver.forgetArrivals(group)
	sent := make([]time.Time, len(evs))
	sends = make([]time.Duration, len(evs))
	err = openLoop(ctx, b.cfg.Rate, len(evs), func(ctx context.Context, i int) error {
		sent[i] = time.Now()
		err := send(ctx, i)
		sends[i] = time.Since(sent[i])
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	lat = make([]time.Duration, len(evs))
	seen := make([]bool, len(evs))
	err = poll(ctx, deliveryTimeout(len(evs)), 10*time.Millisecond, "every latency event to arrive", func(context.Context) error {
		missing := 0
		for i, ev := range evs {
			if seen[i] {
				continue
			}
			at, ok := b.receiver.arrival(group, ev.ID)
			if !ok {
				missing++
				continue
			}
			lat[i], seen[i] = at.Sub(sent[i]), true
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d not delivered", missing, len(evs))
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(lat)
	return lat, sends, nil
}

// isolation is section 5: deliveries per second to the healthy
// subscriptions while some hang until their timeout, against the same run
// with the hanging ones suspended.
func (b *bench) isolation(ctx context.Context, d *dispatcherProc, ns *benchNamespace, healthy, hanging []string) row {
	cfg := b.cfg
	name := fmt.Sprintf("Isolation: healthy deliveries/s, %d of %d subscriptions hanging (timeout 1s)", len(hanging), len(healthy)+len(hanging))
	p := ns.producer(d, cfg.BatchConcurrency)
	counter := b.receiver.counter(groupIsolation)
	measure := func(label string) (float64, error) {
		evs := events(cfg.IsolationEvents, label, typeIsolation, cfg.PayloadBytes)
		total := int64(len(evs) * len(healthy))
		want := counter.Load() + total
		start := time.Now()
		if err := p.publishBatches(ctx, evs, cfg.BatchSize, cfg.BatchConcurrency); err != nil {
			return 0, err
		}
		at, err := waitCount(ctx, counter, want, deliveryTimeout(int(total)))
		if err != nil {
			return 0, err
		}
		return float64(total) / at.Sub(start).Seconds(), nil
	}
	var figures, baselines []float64
	for r := range cfg.Runs {
		if err := b.suspend(ctx, ns.name, hanging, true); err != nil {
			return failedRow(name, err)
		}
		if err := poll(ctx, time.Minute, 20*time.Millisecond, "hanging deliveries to end", func(context.Context) error {
			if n := b.receiver.hanging.Load(); n > 0 {
				return fmt.Errorf("%d still hanging", n)
			}
			return nil
		}); err != nil {
			return failedRow(name, err)
		}
		base, err := measure(fmt.Sprintf("iso-%d-alone", r))
		if err != nil {
			return failedRow(name, err)
		}
		if err := b.suspend(ctx, ns.name, hanging, false); err != nil {
			return failedRow(name, err)
		}
		// Their backlog from the run without them makes them hang at
		// once; wait until each holds requests.
		if err := poll(ctx, time.Minute, 20*time.Millisecond, "the hanging subscriptions to hang", func(context.Context) error {
			if n := b.receiver.hanging.Load(); n < int64(len(hanging)) {
				return fmt.Errorf("%d requests hanging", n)
			}
			return nil
		}); err != nil {
			return failedRow(name, err)
		}
		fig, err := measure(fmt.Sprintf("iso-%d-hung", r))
		if err != nil {
			return failedRow(name, err)
		}
		figures, baselines = append(figures, fig), append(baselines, base)
	}
	b.detail("Isolation: %d requests were hanging at the end", b.receiver.hanging.Load())
	return newRow(name, perSecond, figures, "same, hanging ones suspended", baselines, ratioAtLeast(0.9))
}

// suspend sets spec.suspend of the named subscriptions.
func (b *bench) suspend(ctx context.Context, ns string, names []string, on bool) error {
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"suspend":%t}}`, on))
	for _, n := range names {
		sub := &hooklinev1.WebhookSubscription{}
		sub.Namespace, sub.Name = ns, n
		if err := b.cluster.admin.Patch(ctx, sub, patch); err != nil {
			return fmt.Errorf("setting spec.suspend of %s: %w", n, err)
		}
	}
	return nil
}

// backlogMemory is section 8: the dispatcher's resident memory as events
// pile up behind an endpoint that is down, against the bytes the backlog
// takes in the queue. The backlog is published twice, each time followed by
// a wait past the deduplication window (during which the queue remembers
// every stored event id whatever becomes of the event). The first round also
// grows the heap to what ingesting at full speed needs, once; the second
// round doubles the backlog on the same warmed-up process, so its growth is
// what holding more backlog costs: bounded memory means no growth there.
func (b *bench) backlogMemory(ctx context.Context, d *dispatcherProc, ns *benchNamespace) row {
	cfg := b.cfg
	name := fmt.Sprintf("Dispatcher RSS growth, backlog from %s to %s events (endpoint down)",
		thousands(float64(cfg.Backlog)), thousands(float64(2*cfg.Backlog)))
	down, err := closedPort()
	if err != nil {
		return failedRow(name, err)
	}
	sub := ns.subscription("backlog", d.name, "http://"+down+"/down", 0, "bench.backlog.*")
	if err := b.createAccepted(ctx, ns.name, []client.Object{sub}); err != nil {
		return failedRow(name, err)
	}
	defer func() { _ = b.cluster.deleteSubscriptions(ctx, ns.name, sub.Name) }()
	type reading struct {
		mem    memory
		stored int64
		heap   float64
	}
	read := func() (r reading, err error) {
		if r.mem, err = d.memory(); err != nil {
			return r, err
		}
		// The Go heap in use tells memory the dispatcher holds from memory
		// the runtime has yet to hand back to the system.
		if r.heap, err = d.metric(ctx, "go_memstats_heap_inuse_bytes"); err != nil {
			return r, err
		}
		r.stored, err = d.storedBytes()
		return r, err
	}
	sleep(ctx, cfg.Settle)
	before, err := read()
	if err != nil {
		return failedRow(name, err)
	}
	var after [2]reading
	for round := range after {
		evs := events(cfg.Backlog, fmt.Sprintf("backlog%d", round), typeBacklog, cfg.PayloadBytes)
		if err := ns.producer(d, cfg.BatchConcurrency).publishBatches(ctx, evs, cfg.BatchSize, cfg.BatchConcurrency); err != nil {
			return failedRow(name, err)
		}
		// Past the deduplication window, and long enough for the queue's
		// block cache to expire (10 s idle).
		sleep(ctx, max(cfg.DedupWait, cfg.Settle))
		if after[round], err = read(); err != nil {
			return failedRow(name, err)
		}
		// The first round's profile goes to -memprofile with ".first"
		// added, the second's to -memprofile.
		suffix := ""
		if round == 0 {
			suffix = ".first"
		}
		if err := b.writeHeapProfile(suffix); err != nil {
			return failedRow(name, err)
		}
	}
	wait := max(cfg.DedupWait, cfg.Settle)
	b.detail("Backlog behind a down endpoint, read %s after publishing each %s events: dispatcher RSS %.1f MiB before, %.1f MiB after the first, %.1f MiB after the second (peak %.1f MiB); Go heap in use %.1f, %.1f and %.1f MiB; stored events' files %.1f, %.1f and %.1f MiB",
		wait, thousands(float64(cfg.Backlog)), mib(before.mem.RSS), mib(after[0].mem.RSS), mib(after[1].mem.RSS), mib(after[1].mem.HWM),
		before.heap/(1<<20), after[0].heap/(1<<20), after[1].heap/(1<<20),
		mib(uint64(before.stored)), mib(uint64(after[0].stored)), mib(uint64(after[1].stored)))
	b.detail("RSS growth with the first %s backlogged events, from a fresh dispatcher: %.1f MiB for %.1f MiB stored (ratio %.2f)",
		thousands(float64(cfg.Backlog)), (float64(after[0].mem.RSS)-float64(before.mem.RSS))/(1<<20),
		mib(uint64(after[0].stored-before.stored)), (float64(after[0].mem.RSS)-float64(before.mem.RSS))/float64(max(after[0].stored-before.stored, 1)))
	growth := float64(after[1].mem.RSS) - float64(after[0].mem.RSS)
	return newRow(name, mebibytes, []float64{growth}, "the added backlog's stored bytes", []float64{float64(after[1].stored - after[0].stored)}, ratioAtMost(0.1))
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// runsText lists the runs' values.
func runsText(xs []float64, u unit) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += ", "
		}
		s += formatValue(x, u)
	}
	return s
}
