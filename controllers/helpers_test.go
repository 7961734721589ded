package controllers

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

// markDispatcherAvailable plays the StatefulSet controller and kubelet, which
// the test API server does not run: it waits for the StatefulSet rendered for
// the dispatcher and reports all its replicas ready and available.
func markDispatcherAvailable(t *testing.T, namespace, dispatcher string) {
	t.Helper()
	sts := &appsv1.StatefulSet{}
	key := types.NamespacedName{Namespace: namespace, Name: dispatcher + "-dispatcher"}
	eventually(t, 20*time.Second, func() (bool, string) {
		if err := k8sClient.Get(suiteCtx, key, sts); err != nil {
			return false, fmt.Sprintf("getting StatefulSet %s: %v", key, err)
		}
		replicas := int32(1)
		if sts.Spec.Replicas != nil {
			replicas = *sts.Spec.Replicas
		}
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
