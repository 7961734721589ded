package dispatcher

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/ptr"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
)

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

// InstanceLeaseName is the Lease an instance of a dispatcher renews.
func InstanceLeaseName(dispatcher, instance string) string {
	n := dispatcher + "-instance-" + strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(instance), "-"), "-")
	if len(n) > 253 {
		n = n[:253]
	}
	return n
}

// announce keeps this instance's Lease renewed while it is healthy, so the
// WebhookDispatcher's readiness counts instances that run, in a pod or not.
// The Lease is deleted on a graceful stop; after a crash it expires.
func (d *Dispatcher) announce(ctx context.Context) {
	name := InstanceLeaseName(d.opts.Name, d.opts.Instance)
	leases := d.kube.CoordinationV1().Leases(d.opts.Namespace)
	every := d.opts.LeaseDuration / 3
	t := d.opts.Clock.NewTicker(every)
	defer t.Stop()
	for {
		if err := d.healthy(); err == nil {
			if err := d.renewLease(ctx, name); err != nil && ctx.Err() == nil {
				d.log.Warn("Renewing the instance Lease", "lease", name, "err", err)
			}
			d.subs.refreshInstances(ctx)
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := leases.Delete(dctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				d.log.Warn("Withdrawing the instance Lease", "lease", name, "err", err)
			}
			cancel()
			return
		case <-t.C():
		case <-d.becameReady:
		}
	}
}

func (d *Dispatcher) renewLease(ctx context.Context, name string) error {
	leases := d.kube.CoordinationV1().Leases(d.opts.Namespace)
	now := metav1.NewMicroTime(d.opts.Clock.Now())
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(d.opts.Instance),
		LeaseDurationSeconds: ptr.To(int32(d.opts.LeaseDuration / time.Second)),
		RenewTime:            &now,
	}
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		spec.AcquireTime = &now
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.opts.Namespace,
				Labels:      map[string]string{hooklinev1.LabelDispatcher: d.opts.Name, hooklinev1.LabelLeaseRole: hooklinev1.LeaseRoleInstance},
				Annotations: advertised(nil, d.opts.AdvertiseIngestURL)},
			Spec: spec,
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != d.opts.Instance || l.Spec.AcquireTime == nil {
		spec.AcquireTime = &now
	} else {
		spec.AcquireTime = l.Spec.AcquireTime
	}
	l.Spec = spec
	l.Annotations = advertised(l.Annotations, d.opts.AdvertiseIngestURL)
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// advertised sets, or removes when url is empty, the ingest URL annotation
// of an instance Lease's annotations.
func advertised(annotations map[string]string, url string) map[string]string {
	if url == "" {
		delete(annotations, hooklinev1.AnnotationIngestURL)
		return annotations
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[hooklinev1.AnnotationIngestURL] = url
	return annotations
}

// leadStatus takes part in electing the one instance that writes status,
// and runs the status writer while it leads.
func (d *Dispatcher) leadStatus(ctx context.Context) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: d.opts.Namespace, Name: d.opts.Name + "-status-writer"},
		Client:     d.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: d.opts.Instance},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   d.opts.LeaseDuration / 2,
			RenewDeadline:   d.opts.LeaseDuration / 3,
			RetryPeriod:     d.opts.LeaseDuration / 15,
			ReleaseOnCancel: true,
			Name:            "status-writer",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					d.log.Info("Leading status writing")
					d.leading.Store(true)
					defer d.leading.Store(false)
					// Replays the annotation asks for wait for the leader.
					d.subs.enqueueAll()
					if err := d.writer.Run(ctx); err != nil && ctx.Err() == nil {
						d.log.Error("Writing status", "err", err)
					}
				},
				OnStoppedLeading: func() { d.log.Info("No longer leading status writing") },
			},
		})
		if err != nil {
			d.log.Error("Setting up the status writer election", "err", err)
			return
		}
		le.Run(ctx)
	}
}

// Shares of the events stream's bound: past queueWarnShare the dispatcher
// warns once, and warns again only after use fell below queueRearmShare,
// so use hovering at the mark does not repeat the warning.
const (
	queueWarnShare  = 0.8
	queueRearmShare = 0.7
)

// queueAlert says whether the queue's use u is near its bound, given
// whether it was at the last look, and the warning to give when it just
// became so (empty otherwise).
func queueAlert(u queue.Usage, wasNear bool) (near bool, warning string) {
	if u.MaxBytes == 0 {
		return false, ""
	}
	share := float64(u.Bytes) / float64(u.MaxBytes)
	near = share >= queueWarnShare || (wasNear && share >= queueRearmShare)
	if near && !wasNear {
		warning = fmt.Sprintf("The queue holds %d of its %d bytes (%.0f%%): events wait for subscriptions that are suspended or failing; ingest answers 503 once it is full",
			u.Bytes, u.MaxBytes, 100*share)
	}
	return near, warning
}

// observeQueue exports the queue's storage use and warns, in the log and
// with an Event on the WebhookDispatcher, as it nears its bound. It looks
// every 15 seconds, and at once when ingest found the queue full.
func (d *Dispatcher) observeQueue(ctx context.Context) {
	t := d.opts.Clock.NewTicker(15 * time.Second)
	defer t.Stop()
	near := false
	for {
		if u, err := d.queue.Usage(ctx); err == nil {
			d.metrics.queueBytes.Set(float64(u.Bytes))
			d.metrics.queueMaxBytes.Set(float64(u.MaxBytes))
			d.metrics.queueMessages.Set(float64(u.Messages))
			var warning string
			if near, warning = queueAlert(u, near); warning != "" {
				d.log.Warn(warning, "bytes", u.Bytes, "maxBytes", u.MaxBytes)
				d.dispatcherEvent(hooklinev1.ReasonQueueNearlyFull, warning)
			}
		}
		d.metrics.subscriptions.Set(float64(len(d.subs.keys())))
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-d.queueFull:
		}
	}
}

// noteQueueFull reports that ingest refused events because the queue is
// full: a Warning Event at most once a minute, and a fresh look at the
// queue's use.
func (d *Dispatcher) noteQueueFull() {
	select {
	case d.queueFull <- struct{}{}:
	default:
	}
	ok, more := d.queueFullEvents.allow(d.opts.Clock.Now())
	if !ok {
		return
	}
	msg := "The queue is full: ingest refuses events with 503 until deliveries make room"
	if more > 0 {
		msg += fmt.Sprintf("; %d more refusals in the last minute", more)
	}
	// Ingest logs each refusal; the Event is what operators watch.
	d.dispatcherEvent(hooklinev1.ReasonQueueFull, msg)
}

// dispatcherEvent emits a Warning Event on the WebhookDispatcher served.
func (d *Dispatcher) dispatcherEvent(reason, msg string) {
	obj, err := d.store.dispatcher()
	if err != nil || obj == nil {
		d.log.Debug("No WebhookDispatcher to record an Event on", "reason", reason, "error", err)
		return
	}
	d.events.Eventf(obj, nil, "Warning", reason, "Ingest", "%s", msg)
}
