package dispatcher

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// instances knows which instances of the dispatcher run, from their
// Leases: how many share the rate limits, and which live ones share the
// subscriptions. With the embedded queue this instance is the only one
// that serves.
type instances struct {
	kube                  kubernetes.Interface
	namespace, dispatcher string
	self                  string
	embedded              bool
	// leaseDuration is how long an instance Lease lives unrenewed.
	leaseDuration time.Duration
	clock         clock.PassiveClock
	log           *slog.Logger

	// count is how many instances run; rate limits are shared among them.
	count atomic.Int32
	// live holds the names of the instances whose Lease is fresh, this one
	// included.
	live atomic.Pointer[map[string]bool]
}

func newInstances(kube kubernetes.Interface, namespace, dispatcher, self string, embedded bool, leaseDuration time.Duration, clk clock.PassiveClock, log *slog.Logger) *instances {
	in := &instances{kube: kube, namespace: namespace, dispatcher: dispatcher, self: self, embedded: embedded,
		leaseDuration: leaseDuration, clock: clk, log: log}
	in.count.Store(1)
	in.live.Store(&map[string]bool{self: true})
	return in
}

// instanceChange says what a refresh changed.
type instanceChange struct {
	// count is set when the number of instances changed.
	count bool
	// live is set when the set of live instances changed.
	live bool
}

// refresh reads the instances' Leases again and says what changed; it
// changes nothing when they cannot be read.
func (in *instances) refresh(ctx context.Context) instanceChange {
	list, err := in.kube.CoordinationV1().Leases(in.namespace).List(ctx, metav1.ListOptions{
		LabelSelector: hooklinev1.LabelDispatcher + "=" + in.dispatcher + "," + hooklinev1.LabelLeaseRole + "=" + hooklinev1.LeaseRoleInstance,
	})
	if err != nil {
		if ctx.Err() == nil {
			in.log.Warn("Counting the dispatcher's instances", "err", err)
		}
		return instanceChange{}
	}
	var changed instanceChange
	n := countInstances(list.Items, in.dispatcher, in.clock.Now())
	if old := in.count.Swap(int32(n)); int(old) != n {
		in.log.Info("Sharing rate limits among the live instances", "instances", n)
		changed.count = true
	}
	live := liveInstances(list.Items, in.dispatcher, in.self, in.clock.Now())
	if old := in.live.Swap(&live); !sameSet(*old, live) {
		in.log.Info("The live instances changed", "instances", len(live))
		changed.live = true
	}
	return changed
}

// n is how many instances share the rate limits.
func (in *instances) n() int { return int(in.count.Load()) }

// liveSet is the set of instances whose Lease is fresh, this one included.
func (in *instances) liveSet() map[string]bool { return *in.live.Load() }

// owns says whether this instance runs the lane of the subscription with
// uid: with the embedded queue, the only instance does; on an external
// cluster, the live instance that scores highest for the uid.
func (in *instances) owns(uid string) bool {
	if in.embedded {
		return true
	}
	return ownerOf(uid, in.liveSet()) == in.self
}

// active says whether an instance named in a checkpoint still serves: its
// Lease is fresh, or, for an instance whose Lease this one has not seen
// yet (both just started), it stored a checkpoint (last at heard) within
// a Lease's duration; recheck is then when that stops being true.
func (in *instances) active(instance string, heard time.Time) (active bool, recheck time.Duration) {
	if in.embedded {
		return instance == in.self, 0
	}
	if in.liveSet()[instance] {
		return true, 0
	}
	return heardRecently(heard, in.clock.Now(), in.leaseDuration)
}

// heardRecently says whether an instance last heard of at heard is still
// taken as serving at now, and for how much longer.
func heardRecently(heard, now time.Time, lease time.Duration) (bool, time.Duration) {
	if heard.IsZero() {
		return false, 0
	}
	left := heard.Add(lease).Sub(now)
	if left <= 0 {
		return false, 0
	}
	return true, left
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
