package dispatcher

import (
	"hash/fnv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// ownerOf is the instance that serves the subscription with uid among the
// live ones: the one whose name scores highest with the uid (rendezvous
// hashing), so that an instance joining or leaving moves only the
// subscriptions it wins or held, and every instance agrees without asking
// the others.
func ownerOf(uid string, live map[string]bool) string {
	var best string
	var bestScore uint64
	for inst := range live {
		h := fnv.New64a()
		_, _ = h.Write([]byte(inst))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(uid))
		score := h.Sum64()
		if best == "" || score > bestScore || (score == bestScore && inst < best) {
			best, bestScore = inst, score
		}
	}
	return best
}

// liveInstances names the instances of the dispatcher whose Lease is
// fresh at now, and self, which is live while it asks.
func liveInstances(leases []coordinationv1.Lease, dispatcher, self string, now time.Time) map[string]bool {
	live := map[string]bool{self: true}
	for _, l := range leases {
		if l.Labels[hooklinev1.LabelDispatcher] != dispatcher || l.Labels[hooklinev1.LabelLeaseRole] != hooklinev1.LeaseRoleInstance {
			continue
		}
		if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil || l.Spec.HolderIdentity == nil {
			continue
		}
		if now.Before(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)) {
			live[*l.Spec.HolderIdentity] = true
		}
	}
	return live
}
