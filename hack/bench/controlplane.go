package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

const typeFanout = "bench.fan.created"

// fanoutAndScale runs section 4 and section 7: the fan-out subscriptions
// are also the first control-plane size, then the large size gets a
// dispatcher of its own.
func (b *bench) fanoutAndScale(ctx context.Context) error {
	cfg := b.cfg
	var err error
	if b.managerIdle, err = processMemory(b.cluster.manager.PID()); err != nil {
		return err
	}
	if err := b.fanout(ctx); err != nil {
		return err
	}
	if cfg.wants(7) {
		if err := b.scale(ctx); err != nil {
			return err
		}
	}
	return nil
}

// readyTimes are the outcomes of creating subscriptions, all measured from
// the first create.
type readyTimes struct {
	// created is when the last create returned.
	created time.Duration
	// ready is when the last one was Ready: the manager's verdict, which
	// waits for the dispatcher to accept the subscription (to have made
	// its consumer), so that an event published now reaches it.
	ready time.Duration
}

// readyRun creates n subscriptions in ns with newObject and times them.
func (b *bench) readyRun(ctx context.Context, ns string, n int, newObject func(i int) client.Object) (readyTimes, error) {
	var t readyTimes
	ready, err := b.cluster.watchConditions(ctx, ns, hooklinev1.ConditionReady)
	if err != nil {
		return t, err
	}
	defer ready.stop()
	// Ready must imply Accepted; a run where it does not measures the
	// wrong thing.
	served, err := b.cluster.watchConditions(ctx, ns, hooklinev1.ConditionReady, hooklinev1.ConditionAccepted)
	if err != nil {
		return t, err
	}
	defer served.stop()
	objs := make([]client.Object, n)
	for i := range objs {
		objs[i] = newObject(i)
	}
	start := time.Now()
	// Large runs take minutes: say how far they are every half minute.
	stopProgress := make(chan struct{})
	defer close(stopProgress)
	go func() {
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				fmt.Fprintf(b.progress, "    after %s: %d of %d Ready\n", time.Since(start).Round(time.Second), ready.trues.Load(), n)
			}
		}
	}()
	if err := b.cluster.createAll(ctx, objs, 16); err != nil {
		return t, err
	}
	t.created = time.Since(start)
	readyAt, err := ready.wait(ctx, n, b.cfg.ReadyTimeout)
	if err != nil {
		return t, err
	}
	t.ready = readyAt.Sub(start)
	if _, err := served.wait(ctx, n, 10*time.Second); err != nil {
		return t, fmt.Errorf("all Ready after %s, yet not all Accepted by the dispatcher: %w", t.ready.Round(time.Millisecond), err)
	}
	return t, nil
}

// readyRows are the rows of one control-plane size.
func (b *bench) readyRows(n int, t readyTimes, err error, g goal) []row {
	name := fmt.Sprintf("Control plane: %s subscriptions Ready (accepted by the dispatcher)", thousands(float64(n)))
	if err != nil {
		return []row{failedRow(name, err)}
	}
	b.detail("%s subscriptions (%d WebhookSecrets shared): created in %s (%.0f/s), Ready after %s",
		thousands(float64(n)), b.cfg.Secrets, t.created.Round(time.Millisecond), float64(n)/t.created.Seconds(),
		t.ready.Round(time.Millisecond))
	return []row{newRow(name, duration, []float64{t.ready.Seconds()}, "creating them", []float64{t.created.Seconds()}, g)}
}

// singleReadyCount is how many subscriptions oneReady creates, one after
// the other.
const singleReadyCount = 5

// oneReady is what a user applying one subscription waits for: the time
// from the create request until the subscription is Ready (which waits for
// the dispatcher to accept it), for a few subscriptions created one at a
// time with d running, against the create request alone.
func (b *bench) oneReady(ctx context.Context, d *dispatcherProc) row {
	name := fmt.Sprintf("Control plane: one subscription Ready after it is created (%d, one at a time), --status-interval %s",
		singleReadyCount, b.cfg.StatusInterval)
	ns, err := b.cluster.prepareNamespace(ctx, "single", b.cfg.Secrets)
	if err != nil {
		return failedRow(name, err)
	}
	defer func() { _ = b.cluster.deleteSubscriptions(ctx, ns.name) }()
	ready, err := b.cluster.watchConditions(ctx, ns.name, hooklinev1.ConditionReady, hooklinev1.ConditionAccepted)
	if err != nil {
		return failedRow(name, err)
	}
	defer ready.stop()
	var figures, baselines []float64
	for i := range singleReadyCount {
		sub := ns.subscription(fmt.Sprintf("single-%d", i), d.name, fmt.Sprintf("%s/%s/%d", b.receiver.url, groupFanout, i), i, "bench.single.*")
		start := time.Now()
		if err := b.cluster.admin.Create(ctx, sub); err != nil {
			return failedRow(name, fmt.Errorf("creating %s: %w", sub.Name, err))
		}
		created := time.Since(start)
		at, err := ready.wait(ctx, i+1, b.cfg.ReadyTimeout)
		if err != nil {
			return failedRow(name, err)
		}
		figures = append(figures, at.Sub(start).Seconds())
		baselines = append(baselines, created.Seconds())
	}
	return newRow(name, duration, figures, "the create request", baselines, figureBelow(2))
}

// fanout is section 4, and the first size of section 7: cfg.Fanout
// subscriptions of one namespace with the same pattern, each with its own
// path on the receiver. It measures how long they take to become Ready,
// how long one event takes to reach them all, and status writes while
// events keep coming.
func (b *bench) fanout(ctx context.Context) (err error) {
	cfg := b.cfg
	fanName := fmt.Sprintf("Fan-out: one event to %s subscriptions, all delivered", thousands(float64(cfg.Fanout)))
	statusName := fmt.Sprintf("Status writes/s, %s subscriptions under continuous delivery", thousands(float64(cfg.Fanout)))

	b.step("Starting dispatcher fanout")
	d, err := b.cluster.startDispatcher(ctx, "fanout", cfg.StatusInterval, 0)
	if err != nil {
		return err
	}
	defer b.stopDispatcher(d)
	ns, err := b.cluster.prepareNamespace(ctx, "fanout", cfg.Secrets)
	if err != nil {
		return err
	}
	if cfg.wants(7) {
		b.step("Section 7: one subscription at a time until Ready")
		b.add(b.profiled(7, func() []row { return one(b.oneReady(ctx, d)) })...)
	}
	b.step("Creating %d subscriptions", cfg.Fanout)
	times, err := b.readyRun(ctx, ns.name, cfg.Fanout, func(i int) client.Object {
		return ns.subscription(fmt.Sprintf("fan-%d", i), d.name, fmt.Sprintf("%s/%s/%d", b.receiver.url, groupFanout, i), i, "bench.fan.*")
	})
	if cfg.wants(7) {
		b.add(b.readyRows(cfg.Fanout, times, err, goal{})...)
	}
	if err != nil {
		return err
	}

	p := ns.producer(d, 16)
	if cfg.wants(4) {
		b.step("Section 4: fan-out")
		b.add(b.profiled(4, func() []row { return one(b.fanoutRuns(ctx, fanName, p)) })...)
	}
	if cfg.wants(7) {
		b.step("Section 7: status writes under continuous delivery")
		b.add(b.profiled(7, func() []row { return one(b.statusWrites(ctx, statusName, d, p)) })...)
	}
	b.step("Deleting the fan-out subscriptions")
	return b.cluster.deleteSubscriptions(ctx, ns.name)
}

func (b *bench) fanoutRuns(ctx context.Context, name string, p producer) row {
	cfg := b.cfg
	counter, baseCounter := b.receiver.counter(groupFanout), b.receiver.counter(groupFanoutBase)
	// As many idle connections as the dispatcher's delivery client keeps
	// per host.
	client := newHTTPClient(64)
	var figures, baselines []float64
	for r := range cfg.Runs {
		ev := newEvent("fan", r, typeFanout, cfg.PayloadBytes)
		want := counter.Load() + int64(cfg.Fanout)
		start := time.Now()
		if err := p.single(ctx, ev); err != nil {
			return failedRow(name, err)
		}
		at, err := waitCount(ctx, counter, want, deliveryTimeout(cfg.Fanout))
		if err != nil {
			return failedRow(name, err)
		}
		figures = append(figures, at.Sub(start).Seconds())

		bodies, err := deliveredBodies([]event{ev})
		if err != nil {
			return failedRow(name, err)
		}
		want = baseCounter.Load() + int64(cfg.Fanout)
		start = time.Now()
		err = parallel(ctx, cfg.Fanout, cfg.Fanout, func(ctx context.Context, i int) error {
			return plainPost(ctx, client, fmt.Sprintf("%s/%s/%d", b.receiver.url, groupFanoutBase, i), ev.ID, bodies[0])
		})
		if err != nil {
			return failedRow(name, err)
		}
		elapsed := time.Since(start)
		if baseCounter.Load() < want {
			return failedRow(name, errors.New("the receiver counted fewer baseline requests than were answered"))
		}
		baselines = append(baselines, elapsed.Seconds())
	}
	return newRow(name, duration, figures, fmt.Sprintf("%d plain POSTs, all at once", cfg.Fanout), baselines, figureBelow(1))
}

// statusWrites counts the dispatcher's status applies while every
// subscription gets cfg.StatusRate events a second, against the most the
// status interval allows: one per subscription per interval.
func (b *bench) statusWrites(ctx context.Context, name string, d *dispatcherProc, p producer) row {
	cfg := b.cfg
	const metric = "hookline_status_writes_total"
	before, err := d.metric(ctx, metric)
	if err != nil {
		return failedRow(name, err)
	}
	n := max(1, int(cfg.StatusRate*cfg.StatusWindow.Seconds()))
	start := time.Now()
	// A refused event is counted, not fatal: the status writes are what
	// is measured, and an overloaded queue is worth seeing beside them.
	var refused atomic.Int64
	var lastRefusal atomic.Pointer[error]
	err = openLoop(ctx, cfg.StatusRate, n, func(ctx context.Context, i int) error {
		if err := p.single(ctx, newEvent("status", i, typeFanout, cfg.PayloadBytes)); err != nil {
			refused.Add(1)
			lastRefusal.Store(&err)
		}
		return nil
	})
	if err != nil {
		return failedRow(name, err)
	}
	if r := refused.Load(); r > 0 {
		b.detail("Status writes: %d of %d events were refused: %v", r, n, *lastRefusal.Load())
	}
	// The last event's writes come at the next tick.
	sleep(ctx, cfg.StatusInterval)
	elapsed := time.Since(start)
	after, err := d.metric(ctx, metric)
	if err != nil {
		return failedRow(name, err)
	}
	writes := (after - before) / elapsed.Seconds()
	bound := float64(cfg.Fanout) / cfg.StatusInterval.Seconds()
	b.detail("Status writes: %.0f applies in %s with %s events/s to each of %d subscriptions, --status-interval %s",
		after-before, elapsed.Round(time.Second), thousands(cfg.StatusRate), cfg.Fanout, cfg.StatusInterval)
	return newRow(name, perSecond, []float64{writes}, fmt.Sprintf("bound: 1 per subscription per %s", cfg.StatusInterval), []float64{bound}, ratioAtMost(1))
}

// scale is the large size of section 7, with a dispatcher of its own: time
// until every subscription is Ready, and the peak memory of the manager
// and the dispatcher.
func (b *bench) scale(ctx context.Context) (err error) {
	cfg := b.cfg
	managerName := "Manager peak RSS, after every control-plane run"
	dispatcherName := fmt.Sprintf("Dispatcher peak RSS, serving %s subscriptions", thousands(float64(cfg.Scale)))
	b.step("Starting dispatcher scale")
	d, err := b.cluster.startDispatcher(ctx, "scale", cfg.StatusInterval, 0)
	if err != nil {
		return err
	}
	defer b.stopDispatcher(d)
	ns, err := b.cluster.prepareNamespace(ctx, "scale", cfg.Secrets)
	if err != nil {
		return err
	}
	idle, err := d.memory()
	if err != nil {
		return err
	}
	b.step("Creating %d subscriptions", cfg.Scale)
	times, err := b.readyRun(ctx, ns.name, cfg.Scale, func(i int) client.Object {
		return ns.subscription(fmt.Sprintf("scale-%d", i), d.name, fmt.Sprintf("%s/%s/%d", b.receiver.url, groupScale, i), i, "bench.scale.*")
	})
	b.add(b.readyRows(cfg.Scale, times, err, ratioAtMost(1.2))...)
	sleep(ctx, cfg.Settle)
	mgr, err := processMemory(b.cluster.manager.PID())
	if err != nil {
		b.add(failedRow(managerName, err))
	} else {
		b.add(newRow(managerName, mebibytes, []float64{float64(mgr.HWM)}, "RSS before any of their subscriptions", []float64{float64(b.managerIdle.RSS)}, figureBelow(256<<20)))
	}
	disp, err := d.memory()
	if err != nil {
		b.add(failedRow(dispatcherName, err))
	} else {
		b.add(newRow(dispatcherName, mebibytes, []float64{float64(disp.HWM)}, "RSS with none", []float64{float64(idle.RSS)}, figureBelow(400<<20)))
	}
	return nil
}
