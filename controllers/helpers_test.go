package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// kstatusOf fetches obj from the API server and returns what kstatus (the
// library kubectl, Flux and Argo CD rely on) computes for it.
func kstatusOf(t *testing.T, obj client.Object) (status.Status, string) {
	t.Helper()
	if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatalf("getting %s: %v", obj.GetName(), err)
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatalf("converting %s: %v", obj.GetName(), err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: content})
	if err != nil {
		t.Fatalf("computing kstatus of %s: %v", obj.GetName(), err)
	}
	return res.Status, res.Message
}

// waitForKstatus waits until kstatus computes want for obj.
func waitForKstatus(t *testing.T, obj client.Object, want status.Status) {
	t.Helper()
	eventually(t, 20*time.Second, func() (bool, string) {
		got, msg := kstatusOf(t, obj)
		return got == want, fmt.Sprintf("kstatus of %s is %s (%s), want %s", obj.GetName(), got, msg, want)
	})
}

// markDispatcherAvailable plays the StatefulSet controller, kubelet and the
// dispatcher processes, none of which the test API server runs: it reports
// the dispatcher's pods available (markStatefulSetAvailable) and announces
// each instance with a Lease renewed now (by testClock) for
// testInstanceLeaseSeconds, as a running dispatcher does.
func markDispatcherAvailable(t *testing.T, namespace, dispatcher string) {
	t.Helper()
	replicas := markStatefulSetAvailable(t, namespace, dispatcher)
	for i := range replicas {
		announceInstance(t, namespace, dispatcher, fmt.Sprintf("%s-dispatcher-%d", dispatcher, i), testClock.Now(), testInstanceLeaseSeconds, nil)
	}
}

// markStatefulSetAvailable plays the StatefulSet controller and kubelet: it
// waits for the StatefulSet rendered for the dispatcher, reports all its
// replicas ready, available and up to date, and returns how many there are.
func markStatefulSetAvailable(t *testing.T, namespace, dispatcher string) int32 {
	t.Helper()
	sts := &appsv1.StatefulSet{}
	key := types.NamespacedName{Namespace: namespace, Name: dispatcher + "-dispatcher"}
	var replicas int32
	eventually(t, 20*time.Second, func() (bool, string) {
		if err := k8sClient.Get(suiteCtx, key, sts); err != nil {
			return false, fmt.Sprintf("getting StatefulSet %s: %v", key, err)
		}
		replicas = ptr.Deref(sts.Spec.Replicas, 1)
		sts.Status.ObservedGeneration = sts.Generation
		sts.Status.Replicas = replicas
		sts.Status.ReadyReplicas = replicas
		sts.Status.AvailableReplicas = replicas
		sts.Status.UpdatedReplicas = replicas
		sts.Status.CurrentReplicas = replicas
		if err := k8sClient.Status().Update(suiteCtx, sts); err != nil {
			return false, fmt.Sprintf("updating StatefulSet status: %v", err)
		}
		return true, ""
	})
	return replicas
}

// testInstanceLeaseSeconds is how long the instance Leases of
// markDispatcherAvailable last: long enough that no test outlives them
// unless it steps testClock.
const testInstanceLeaseSeconds = 3600

// instanceLeaseName is the Lease the dispatcher's instance keeps, as the
// dispatcher names it: "<dispatcher>-instance-<instance>".
func instanceLeaseName(dispatcher, instance string) string {
	return dispatcher + "-instance-" + instance
}

// announceInstance creates or renews the Lease of one dispatcher instance,
// renewed at renewed for seconds, with the labels of an instance Lease of
// dispatcher unless labels says otherwise. It returns the Lease as stored.
func announceInstance(t *testing.T, namespace, dispatcher, instance string, renewed time.Time, seconds int32, labels map[string]string) *coordinationv1.Lease {
	t.Helper()
	if labels == nil {
		labels = map[string]string{hooklinev1.LabelDispatcher: dispatcher, hooklinev1.LabelLeaseRole: hooklinev1.LeaseRoleInstance}
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: instanceLeaseName(dispatcher, instance)}}
	eventually(t, 20*time.Second, func() (bool, string) {
		err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(lease), lease)
		if client.IgnoreNotFound(err) != nil {
			return false, fmt.Sprintf("getting Lease %s: %v", lease.Name, err)
		}
		lease.Namespace, lease.Name = namespace, instanceLeaseName(dispatcher, instance)
		lease.Labels = labels
		lease.Spec = coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(instance),
			LeaseDurationSeconds: ptr.To(seconds),
			AcquireTime:          ptr.To(metav1.NewMicroTime(renewed)),
			RenewTime:            ptr.To(metav1.NewMicroTime(renewed)),
		}
		if apierrors.IsNotFound(err) {
			err = k8sClient.Create(suiteCtx, lease)
		} else {
			err = k8sClient.Update(suiteCtx, lease)
		}
		if err != nil {
			return false, fmt.Sprintf("writing Lease %s: %v", lease.Name, err)
		}
		return true, ""
	})
	return lease
}

// eventsWithReason lists the Kubernetes Events in namespace with reason.
func eventsWithReason(t *testing.T, namespace, reason string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := k8sClient.List(suiteCtx, &list, client.InNamespace(namespace)); err != nil {
		t.Fatalf("listing events: %v", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// startNamespacedManager starts a second manager running every controller
// (with Setup) on the objects of namespace ns only, so that it leaves the
// other tests' objects to the suite's, its requests to the API server
// passing through wrap, and stops it when the test ends.
func startNamespacedManager(t *testing.T, ns string, wrap transport.WrapperFunc, subscriptionWorkers int) {
	t.Helper()
	cfg := rest.CopyConfig(restConfig)
	cfg.Wrap(wrap)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 k8sClient.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{ns: {}},
			ByObject:          map[client.Object]cache.ByObject{&corev1.Namespace{}: {Field: fields.OneTermEqualSelector("metadata.name", ns)}},
		},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatalf("creating the manager: %v", err)
	}
	if err := Setup(suiteCtx, mgr, Options{
		DefaultDispatcher:     types.NamespacedName{Namespace: testOperatorNamespace, Name: DefaultDispatcherName},
		DispatcherImage:       testDispatcherImage,
		DispatcherClusterRole: testDispatcherClusterRole,
		SubscriptionWorkers:   subscriptionWorkers,
		Clock:                 testClock,
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(suiteCtx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the test's manager: %v", err)
		}
	})
}
