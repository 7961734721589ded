package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

const dispatcherTestTimeout = 20 * time.Second

// createTestDispatcher creates a dispatcher named pool in ns.
func createTestDispatcher(t *testing.T, ns string, mutate ...func(*hooklinev1.WebhookDispatcher)) *hooklinev1.WebhookDispatcher {
	t.Helper()
	d := &hooklinev1.WebhookDispatcher{ObjectMeta: metav1.ObjectMeta{Name: "pool", Namespace: ns}}
	for _, m := range mutate {
		m(d)
	}
	if err := k8sClient.Create(suiteCtx, d); err != nil {
		t.Fatalf("creating WebhookDispatcher: %v", err)
	}
	return d
}

func admitAllNamespaces(d *hooklinev1.WebhookDispatcher) {
	d.Spec.AllowedNamespaces.From = hooklinev1.NamespacesFromAll
}

// createTestSubscription creates, in ns, a WebhookSecret "signing" keeping
// its keys in the Secret "shop-keys", and a subscription "orders" attached
// to the dispatcher that signs with it and takes a header from the Secret
// "partner-token".
func createTestSubscription(t *testing.T, ns string, dispatcher types.NamespacedName) *hooklinev1.WebhookSubscription {
	t.Helper()
	ws := &hooklinev1.WebhookSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "signing", Namespace: ns},
		Spec:       hooklinev1.WebhookSecretSpec{SecretName: "shop-keys"},
	}
	if err := k8sClient.Create(suiteCtx, ws); err != nil {
		t.Fatalf("creating WebhookSecret: %v", err)
	}
	sub := &hooklinev1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns},
		Spec: hooklinev1.WebhookSubscriptionSpec{
			URL:           "https://hooks.example/orders",
			EventTypes:    []string{"order.*"},
			DispatcherRef: &hooklinev1.DispatcherReference{Name: dispatcher.Name, Namespace: dispatcher.Namespace},
			Signing:       hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "signing"}},
			Headers: []hooklinev1.Header{{Name: "Authorization", ValueFrom: &hooklinev1.HeaderValueSource{
				SecretKeyRef: hooklinev1.SecretKeyReference{Name: "partner-token", Key: "token"},
			}}},
		},
	}
	if err := k8sClient.Create(suiteCtx, sub); err != nil {
		t.Fatalf("creating WebhookSubscription: %v", err)
	}
	return sub
}

// waitForObject waits until obj (named by key) exists and check accepts it.
func waitForObject(t *testing.T, key types.NamespacedName, obj client.Object, check func() string) {
	t.Helper()
	eventually(t, dispatcherTestTimeout, func() (bool, string) {
		if err := k8sClient.Get(suiteCtx, key, obj); err != nil {
			return false, fmt.Sprintf("getting %T %s: %v", obj, key, err)
		}
		if check != nil {
			if msg := check(); msg != "" {
				return false, fmt.Sprintf("%T %s: %s", obj, key, msg)
			}
		}
		return true, ""
	})
}

// waitForGone waits until obj (named by key) does not exist.
func waitForGone(t *testing.T, key types.NamespacedName, obj client.Object) {
	t.Helper()
	eventually(t, dispatcherTestTimeout, func() (bool, string) {
		err := k8sClient.Get(suiteCtx, key, obj)
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		return false, fmt.Sprintf("%T %s still exists (err %v)", obj, key, err)
	})
}

// waitForDispatcherCondition waits until the dispatcher's condition typ has
// status want and a message containing msg, and returns the dispatcher.
func waitForDispatcherCondition(t *testing.T, d *hooklinev1.WebhookDispatcher, typ string, want metav1.ConditionStatus, msg string) *hooklinev1.WebhookDispatcher {
	t.Helper()
	got := &hooklinev1.WebhookDispatcher{}
	waitForObject(t, client.ObjectKeyFromObject(d), got, func() string {
		c := meta.FindStatusCondition(got.Status.Conditions, typ)
		if c == nil || c.Status != want || !strings.Contains(c.Message, msg) || got.Status.ObservedGeneration != got.Generation {
			return fmt.Sprintf("condition %s is %+v at observed generation %d of %d, want %s with %q", typ, c, got.Status.ObservedGeneration, got.Generation, want, msg)
		}
		return ""
	})
	return got
}

// controlledBy says what is wrong with obj's controller reference, if
// anything.
func controlledBy(obj client.Object, d *hooklinev1.WebhookDispatcher) string {
	ref := metav1.GetControllerOf(obj)
	if ref == nil {
		return "no controller reference"
	}
	if ref.UID != d.UID || ref.Kind != "WebhookDispatcher" || ref.APIVersion != "hookline.dev/v1alpha1" || ref.Name != d.Name {
		return fmt.Sprintf("controlled by %+v, want the dispatcher %s", *ref, d.UID)
	}
	return ""
}

func restrictedPodSecurity(sts *appsv1.StatefulSet) string {
	pod := sts.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || ptr.Deref(psc.RunAsUser, 0) != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		return fmt.Sprintf("pod security context %+v is not restricted", psc)
	}
	if len(pod.Containers) != 1 {
		return fmt.Sprintf("%d containers, want 1", len(pod.Containers))
	}
	sc := pod.Containers[0].SecurityContext
	if sc == nil || ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		return fmt.Sprintf("container security context %+v is not restricted", sc)
	}
	return ""
}

func TestWebhookDispatcherRendersOwnedObjects(t *testing.T) {
	ns := newNamespace(t)
	d := createTestDispatcher(t, ns)
	name := types.NamespacedName{Namespace: ns, Name: "pool-dispatcher"}

	sts := &appsv1.StatefulSet{}
	waitForObject(t, name, sts, func() string {
		if msg := controlledBy(sts, d); msg != "" {
			return msg
		}
		if got := sts.Spec.Template.Spec.Containers[0].Image; got != testDispatcherImage {
			return fmt.Sprintf("image %q, want the manager's %q", got, testDispatcherImage)
		}
		if len(sts.Spec.VolumeClaimTemplates) != 1 {
			return "no volume claim for the embedded queue"
		}
		return restrictedPodSecurity(sts)
	})
	for _, obj := range []client.Object{
		&corev1.Service{}, &corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}, &policyv1.PodDisruptionBudget{},
	} {
		waitForObject(t, name, obj, func() string { return controlledBy(obj, d) })
	}

	crb := &rbacv1.ClusterRoleBinding{}
	waitForObject(t, types.NamespacedName{Name: "hookline-dispatcher:" + ns + ":pool"}, crb, func() string {
		if crb.RoleRef.Name != testDispatcherClusterRole {
			return fmt.Sprintf("binds %q, want %q", crb.RoleRef.Name, testDispatcherClusterRole)
		}
		want := rbacv1.Subject{Kind: "ServiceAccount", Name: "pool-dispatcher", Namespace: ns}
		if !slices.Equal(crb.Subjects, []rbacv1.Subject{want}) {
			return fmt.Sprintf("subjects %v, want %v", crb.Subjects, want)
		}
		return ""
	})

	// No instance is available: the StatefulSet controller does not run here.
	got := waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionFalse, "0 of 1 dispatcher instances available")
	if got.Status.Address != "http://pool-dispatcher."+ns+".svc:8080" {
		t.Errorf("status.address = %q", got.Status.Address)
	}
	if got.Status.ServiceAccountName != "pool-dispatcher" {
		t.Errorf("status.serviceAccountName = %q", got.Status.ServiceAccountName)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionReady); c.Reason != hooklinev1.ReasonReplicasUnavailable {
		t.Errorf("Ready reason = %q, want %q", c.Reason, hooklinev1.ReasonReplicasUnavailable)
	}
	if !slices.Contains(got.Finalizers, "hookline.dev/dispatcher-cleanup") {
		t.Errorf("finalizers = %v, want the cleanup finalizer", got.Finalizers)
	}
	if s, msg := kstatusOf(t, got); s != status.InProgressStatus {
		t.Errorf("kstatus = %s (%s), want InProgress", s, msg)
	}

	markDispatcherAvailable(t, ns, "pool")
	waitForKstatus(t, d, status.CurrentStatus)
	got = waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "1 of 1 dispatcher instances available")
	if got.Status.ReadyReplicas != 1 || got.Status.Replicas != 1 {
		t.Errorf("replicas %d, ready %d, want 1 and 1", got.Status.Replicas, got.Status.ReadyReplicas)
	}
}

func TestWebhookDispatcherRepairsEdits(t *testing.T) {
	ns := newNamespace(t)
	d := createTestDispatcher(t, ns)
	name := types.NamespacedName{Namespace: ns, Name: "pool-dispatcher"}
	// Let the reconciliations that creating the objects set off settle, so
	// what follows is repaired by the watches on the edited objects.
	markDispatcherAvailable(t, ns, "pool")
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "1 of 1")

	// Someone deletes the Service.
	svc := &corev1.Service{}
	waitForObject(t, name, svc, nil)
	oldUID := svc.UID
	if err := k8sClient.Delete(suiteCtx, svc); err != nil {
		t.Fatalf("deleting the Service: %v", err)
	}
	waitForObject(t, name, svc, func() string {
		if svc.UID == oldUID {
			return "not recreated yet"
		}
		return controlledBy(svc, d)
	})

	// Someone swaps the image and drops the security context.
	sts := &appsv1.StatefulSet{}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8sClient.Get(suiteCtx, name, sts); err != nil {
			return err
		}
		sts.Spec.Template.Spec.Containers[0].Image = "registry.example/not-hookline:latest"
		sts.Spec.Template.Spec.Containers[0].SecurityContext = nil
		sts.Spec.Template.Spec.SecurityContext = nil
		return k8sClient.Update(suiteCtx, sts)
	}); err != nil {
		t.Fatalf("editing the StatefulSet: %v", err)
	}
	waitForObject(t, name, sts, func() string {
		if got := sts.Spec.Template.Spec.Containers[0].Image; got != testDispatcherImage {
			return fmt.Sprintf("image %q, want %q", got, testDispatcherImage)
		}
		return restrictedPodSecurity(sts)
	})

	// Someone deletes the ClusterRoleBinding, which has no owner reference.
	crbName := types.NamespacedName{Name: "hookline-dispatcher:" + ns + ":pool"}
	crb := &rbacv1.ClusterRoleBinding{}
	waitForObject(t, crbName, crb, nil)
	oldUID = crb.UID
	if err := k8sClient.Delete(suiteCtx, crb); err != nil {
		t.Fatalf("deleting the ClusterRoleBinding: %v", err)
	}
	waitForObject(t, crbName, crb, func() string {
		if crb.UID == oldUID {
			return "not recreated yet"
		}
		return ""
	})
}

func TestWebhookDispatcherRebindsClusterRole(t *testing.T) {
	ns := newNamespace(t)
	// A binding left by an operator installed with another ClusterRole;
	// roleRef cannot be changed in place.
	crbName := types.NamespacedName{Name: "hookline-dispatcher:" + ns + ":pool"}
	stale := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: crbName.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "hookline-dispatcher-old"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "pool-dispatcher", Namespace: ns}},
	}
	if err := k8sClient.Create(suiteCtx, stale); err != nil {
		t.Fatalf("creating the stale ClusterRoleBinding: %v", err)
	}
	d := createTestDispatcher(t, ns)
	crb := &rbacv1.ClusterRoleBinding{}
	waitForObject(t, crbName, crb, func() string {
		if crb.RoleRef.Name != testDispatcherClusterRole {
			return fmt.Sprintf("binds %q, want %q", crb.RoleRef.Name, testDispatcherClusterRole)
		}
		return ""
	})
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionFalse, "0 of 1 dispatcher instances available")
}

func TestWebhookDispatcherGrantsSubscriptionSecrets(t *testing.T) {
	dns := newNamespace(t)
	d := createTestDispatcher(t, dns, admitAllNamespaces)
	markDispatcherAvailable(t, dns, "pool")
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "1 of 1")
	sns := newNamespace(t)
	sub := createTestSubscription(t, sns, client.ObjectKeyFromObject(d))

	roleName := types.NamespacedName{Namespace: sns, Name: "hookline-dispatcher-" + dns + "-pool"}
	role := &rbacv1.Role{}
	waitForObject(t, roleName, role, func() string {
		want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"},
			ResourceNames: []string{"partner-token", "shop-keys"}, Verbs: []string{"get", "list", "watch"}}}
		if fmt.Sprint(role.Rules) != fmt.Sprint(want) {
			return fmt.Sprintf("rules %v, want %v", role.Rules, want)
		}
		return ""
	})
	binding := &rbacv1.RoleBinding{}
	waitForObject(t, roleName, binding, func() string {
		want := rbacv1.Subject{Kind: "ServiceAccount", Name: "pool-dispatcher", Namespace: dns}
		if binding.RoleRef.Name != roleName.Name || !slices.Equal(binding.Subjects, []rbacv1.Subject{want}) {
			return fmt.Sprintf("binds %s to %v, want %s to %v", binding.RoleRef.Name, binding.Subjects, roleName.Name, want)
		}
		return ""
	})

	if err := k8sClient.Delete(suiteCtx, sub); err != nil {
		t.Fatalf("deleting the subscription: %v", err)
	}
	waitForGone(t, roleName, &rbacv1.Role{})
	waitForGone(t, roleName, &rbacv1.RoleBinding{})
}

func TestWebhookDispatcherFollowsNamespaceSelector(t *testing.T) {
	dns := newNamespace(t)
	d := createTestDispatcher(t, dns, func(d *hooklinev1.WebhookDispatcher) {
		d.Spec.AllowedNamespaces = hooklinev1.AllowedNamespaces{
			From:     hooklinev1.NamespacesFromSelector,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"hookline.dev/team": "shop-" + dns}},
		}
	})
	sns := newNamespace(t)
	createTestSubscription(t, sns, client.ObjectKeyFromObject(d))
	roleName := types.NamespacedName{Namespace: sns, Name: "hookline-dispatcher-" + dns + "-pool"}

	// Not admitted: no access to its Secrets. Let the dispatcher settle
	// (Ready comes after the Secret access step), then check nothing was
	// granted.
	markDispatcherAvailable(t, dns, "pool")
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "1 of 1")
	if err := k8sClient.Get(suiteCtx, roleName, &rbacv1.Role{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a namespace the dispatcher does not admit got a Role (err %v)", err)
	}

	setTeam := func(team string) {
		t.Helper()
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			nsObj := &corev1.Namespace{}
			if err := k8sClient.Get(suiteCtx, types.NamespacedName{Name: sns}, nsObj); err != nil {
				return err
			}
			if nsObj.Labels == nil {
				nsObj.Labels = map[string]string{}
			}
			nsObj.Labels["hookline.dev/team"] = team
			return k8sClient.Update(suiteCtx, nsObj)
		}); err != nil {
			t.Fatalf("labelling namespace %s: %v", sns, err)
		}
	}
	setTeam("shop-" + dns)
	waitForObject(t, roleName, &rbacv1.Role{}, nil)
	setTeam("elsewhere")
	waitForGone(t, roleName, &rbacv1.Role{})
}

func TestWebhookDispatcherDeletionReleasesAccess(t *testing.T) {
	dns := newNamespace(t)
	d := createTestDispatcher(t, dns, admitAllNamespaces)
	sns := newNamespace(t)
	createTestSubscription(t, sns, client.ObjectKeyFromObject(d))

	crbName := types.NamespacedName{Name: "hookline-dispatcher:" + dns + ":pool"}
	roleName := types.NamespacedName{Namespace: sns, Name: "hookline-dispatcher-" + dns + "-pool"}
	waitForObject(t, crbName, &rbacv1.ClusterRoleBinding{}, nil)
	waitForObject(t, roleName, &rbacv1.Role{}, nil)
	waitForObject(t, roleName, &rbacv1.RoleBinding{}, nil)

	if err := k8sClient.Delete(suiteCtx, d); err != nil {
		t.Fatalf("deleting the dispatcher: %v", err)
	}
	waitForGone(t, client.ObjectKeyFromObject(d), &hooklinev1.WebhookDispatcher{})
	for _, check := range []struct {
		key types.NamespacedName
		obj client.Object
	}{
		{crbName, &rbacv1.ClusterRoleBinding{}},
		{roleName, &rbacv1.Role{}},
		{roleName, &rbacv1.RoleBinding{}},
	} {
		if err := k8sClient.Get(suiteCtx, check.key, check.obj); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s outlived the dispatcher (err %v)", check.obj, check.key, err)
		}
	}
}

func TestWebhookDispatcherScaledToZero(t *testing.T) {
	ns := newNamespace(t)
	d := createTestDispatcher(t, ns)
	markDispatcherAvailable(t, ns, "pool")
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "1 of 1")

	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Replicas = ptr.To[int32](0)
	if err := k8sClient.Patch(suiteCtx, d, patch); err != nil {
		t.Fatalf("scaling to zero: %v", err)
	}
	sts := &appsv1.StatefulSet{}
	waitForObject(t, types.NamespacedName{Namespace: ns, Name: "pool-dispatcher"}, sts, func() string {
		if ptr.Deref(sts.Spec.Replicas, -1) != 0 {
			return fmt.Sprintf("replicas %v, want 0", sts.Spec.Replicas)
		}
		return ""
	})
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "Scaled to zero")
	waitForKstatus(t, d, status.CurrentStatus)
}

func TestWebhookDispatcherInvalidNameStalls(t *testing.T) {
	ns := newNamespace(t)
	// Admission accepts any DNS subdomain as a name; a Service needs a
	// DNS label that starts with a letter.
	d := createTestDispatcher(t, ns, func(d *hooklinev1.WebhookDispatcher) { d.Name = "1team" })

	waitForKstatus(t, d, status.FailedStatus)
	got := waitForDispatcherCondition(t, d, hooklinev1.ConditionStalled, metav1.ConditionTrue, "must start with a letter")
	if c := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionStalled); c.Reason != hooklinev1.ReasonInvalidSpec {
		t.Errorf("Stalled reason = %q, want %q", c.Reason, hooklinev1.ReasonInvalidSpec)
	}
	eventually(t, dispatcherTestTimeout, func() (bool, string) {
		for _, e := range eventsWithReason(t, ns, hooklinev1.ReasonInvalidSpec) {
			if e.Type == corev1.EventTypeWarning && e.Regarding.Name == d.Name {
				return true, ""
			}
		}
		return false, "no Warning event InvalidSpec about the dispatcher"
	})
	var list appsv1.StatefulSetList
	if err := k8sClient.List(suiteCtx, &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing StatefulSets: %v", err)
	}
	if len(list.Items) != 0 || len(got.Finalizers) != 0 {
		t.Errorf("a stalled dispatcher got %d StatefulSets and finalizers %v, want nothing applied", len(list.Items), got.Finalizers)
	}
}
