package cli

import (
	"context"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// noPodError says that a dispatcher has no Ready pod to port-forward to.
type noPodError struct{ msg string }

func (e *noPodError) Error() string { return e.msg }

// announcedIngestURL is the ingest URL a live instance of the dispatcher
// ns/name announces on its instance Lease (a dispatcher run as a local
// process with --advertise-ingest-url, as the playground's), by instance
// name for a stable choice. found is false when there is none, or the
// Leases cannot be read.
func (a *app) announcedIngestURL(ctx context.Context, ns, name string) (url string, found bool) {
	kube, err := a.kubeClient()
	if err != nil {
		return "", false
	}
	leases, err := kube.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{
		hooklinev1.LabelDispatcher: name,
		hooklinev1.LabelLeaseRole:  hooklinev1.LeaseRoleInstance,
	}.String()})
	if err != nil {
		return "", false
	}
	now := a.clock.Now()
	var live []string
	byName := map[string]string{}
	for _, l := range leases.Items {
		u := l.Annotations[hooklinev1.AnnotationIngestURL]
		s := l.Spec
		if u == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil ||
			!now.Before(s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds)*time.Second)) {
			continue
		}
		live = append(live, l.Name)
		byName[l.Name] = u
	}
	if len(live) == 0 {
		return "", false
	}
	return byName[slices.Min(live)], true
}
