package controllers

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestDispatcherPodPassesRestrictedPodSecurity asks the API server's own
// Pod Security admission whether the dispatcher's pod may run in a
// namespace that enforces the restricted profile: a Pod built from the
// rendered StatefulSet's template is created there (server-side dry run).
func TestDispatcherPodPassesRestrictedPodSecurity(t *testing.T) {
	ns := newNamespace(t)
	nsObj := &corev1.Namespace{}
	if err := k8sClient.Get(suiteCtx, types.NamespacedName{Name: ns}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	nsObj.Labels["pod-security.kubernetes.io/enforce-version"] = "latest"
	if err := k8sClient.Update(suiteCtx, nsObj); err != nil {
		t.Fatalf("labelling the namespace restricted: %v", err)
	}
	createTestDispatcher(t, ns)

	sts := &appsv1.StatefulSet{}
	eventually(t, dispatcherTestTimeout, func() (bool, string) {
		err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: "pool-dispatcher"}, sts)
		return err == nil, fmt.Sprintf("getting the StatefulSet: %v", err)
	})
	// The StatefulSet controller adds a volume per claim template, as here.
	podFrom := func(spec corev1.PodSpec) *corev1.Pod {
		for _, claim := range sts.Spec.VolumeClaimTemplates {
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: claim.Name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim.Name + "-pool-dispatcher-0"},
			}})
		}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool-dispatcher-0"}, Spec: spec}
	}
	if err := k8sClient.Create(suiteCtx, podFrom(sts.Spec.Template.Spec), client.DryRunAll); err != nil {
		t.Fatalf("the dispatcher pod is refused under the restricted profile: %v", err)
	}

	// The check has teeth: the same pod allowed to escalate privileges is
	// refused.
	weakened := sts.Spec.Template.Spec.DeepCopy()
	weakened.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	err := k8sClient.Create(suiteCtx, podFrom(*weakened), client.DryRunAll)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "allowPrivilegeEscalation") {
		t.Fatalf("a pod allowing privilege escalation was not refused by Pod Security admission: %v", err)
	}
}
