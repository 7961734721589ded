package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/test/testenv"
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
		&corev1.Service{}, &corev1.ServiceAccount{}, &rbacv1.RoleBinding{}, &policyv1.PodDisruptionBudget{},
	} {
		waitForObject(t, name, obj, func() string { return controlledBy(obj, d) })
	}
	// Leases and Events in its namespace: the local ClusterRole, bound
	// there, and no Role of its own.
	rb := &rbacv1.RoleBinding{}
	waitForObject(t, name, rb, func() string {
		want := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: testDispatcherClusterRole + "-local"}
		if rb.RoleRef != want {
			return fmt.Sprintf("binds %+v, want %+v", rb.RoleRef, want)
		}
		return ""
	})
	if err := k8sClient.Get(suiteCtx, name, &rbacv1.Role{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dispatcher got a Role of its own (err %v), want the local ClusterRole bound", err)
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

	// No instance runs: no dispatcher process announced itself.
	got := waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionFalse, "0 of 1 dispatcher instances running")
	if got.Status.Address != "http://pool-dispatcher."+ns+".svc:8080" {
		t.Errorf("status.address = %q", got.Status.Address)
	}
	if got.Status.ServiceAccountName != "pool-dispatcher" {
		t.Errorf("status.serviceAccountName = %q", got.Status.ServiceAccountName)
	}
	// kubectl scale and the HorizontalPodAutoscaler read the pods through
	// the scale subresource's selector.
	scale := &autoscalingv1.Scale{}
	if err := k8sClient.SubResource("scale").Get(suiteCtx, got, scale); err != nil {
		t.Fatalf("getting the scale subresource: %v", err)
	}
	selector, err := labels.Parse(scale.Status.Selector)
	if err != nil {
		t.Fatalf("scale selector %q: %v", scale.Status.Selector, err)
	}
	if !selector.Matches(labels.Set(sts.Spec.Template.Labels)) || selector.Empty() {
		t.Errorf("scale selector %q does not select the dispatcher's pods (labels %v)", scale.Status.Selector, sts.Spec.Template.Labels)
	}
	if scale.Spec.Replicas != 1 {
		t.Errorf("scale replicas = %d, want 1", scale.Spec.Replicas)
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
	got = waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "1 of 1 dispatcher instances running")
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
		ObjectMeta: metav1.ObjectMeta{Name: crbName.Name, Labels: map[string]string{
			"hookline.dev/dispatcher-namespace": ns, "hookline.dev/dispatcher-name": "pool",
		}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "hookline-dispatcher-old"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "pool-dispatcher", Namespace: ns}},
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
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionFalse, "0 of 1 dispatcher instances running")
}

func TestWebhookDispatcherGrantsSubscriptionSecrets(t *testing.T) {
	dns := newNamespace(t)
	d := createTestDispatcher(t, dns, admitAllNamespaces)
	markDispatcherAvailable(t, dns, "pool")
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "1 of 1")
	sns := newNamespace(t)
	sub := createTestSubscription(t, sns, client.ObjectKeyFromObject(d))

	roleName := types.NamespacedName{Namespace: sns, Name: "hookline-dispatcher:" + dns + ":pool"}
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
	roleName := types.NamespacedName{Namespace: sns, Name: "hookline-dispatcher:" + dns + ":pool"}

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
	roleName := types.NamespacedName{Namespace: sns, Name: "hookline-dispatcher:" + dns + ":pool"}
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

func TestWebhookDispatcherAdmissionRefusesInvalidName(t *testing.T) {
	ns := newNamespace(t)
	// A DNS subdomain, as every name must be, but the dispatcher's Service
	// needs a DNS label that starts with a letter. (validDispatcherSpec
	// refuses it on servers without the rule: TestWebhookDispatcherValidSpec.)
	d := &hooklinev1.WebhookDispatcher{ObjectMeta: metav1.ObjectMeta{Name: "1team", Namespace: ns}}
	err := k8sClient.Create(suiteCtx, d)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "metadata.name must start with a letter") {
		t.Fatalf("creating a dispatcher named 1team: got %v, want it refused as invalid: must start with a letter", err)
	}
}

// patchDispatcher merge-patches the dispatcher with patch (JSON).
func patchDispatcher(d *hooklinev1.WebhookDispatcher, patch string) error {
	return k8sClient.Patch(suiteCtx, d.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch)))
}

func TestWebhookDispatcherQueueChangeAdmission(t *testing.T) {
	ns := newNamespace(t)
	embedded := createTestDispatcher(t, ns, func(d *hooklinev1.WebhookDispatcher) {
		d.Spec.Queue.Embedded = &hooklinev1.EmbeddedQueue{Size: ptr.To(resource.MustParse("1Gi")), StorageClassName: ptr.To("standard")}
	})
	external := createTestDispatcher(t, ns, func(d *hooklinev1.WebhookDispatcher) {
		d.Name = "shared"
		d.Spec.Queue.External = &hooklinev1.ExternalQueue{URL: "nats://nats-0.nats:4222"}
	})
	const (
		volumeFixed  = "the embedded queue's volume cannot change once created"
		backendFixed = "the queue backend cannot change between embedded and external"
	)
	tests := []struct {
		name    string
		d       *hooklinev1.WebhookDispatcher
		patch   string
		wantErr string // empty: accepted
	}{
		{"queue size", embedded, `{"spec":{"queue":{"embedded":{"size":"5Gi"}}}}`, volumeFixed},
		{"storage class", embedded, `{"spec":{"queue":{"embedded":{"storageClassName":"fast-ssd"}}}}`, volumeFixed},
		{"embedded to external", embedded, `{"spec":{"queue":{"embedded":null,"external":{"url":"nats://nats:4222"}}}}`, backendFixed},
		{"external to embedded", external, `{"spec":{"queue":{"external":null,"embedded":{}}}}`, backendFixed},
		{"external to the default embedded queue", external, `{"spec":{"queue":{"external":null}}}`, backendFixed},
		{"another external URL", external, `{"spec":{"queue":{"external":{"url":"tls://nats.example:4222"}}}}`, ""},
		{"the same embedded queue, other fields", embedded, `{"spec":{"image":"mirror.example/hookline:v2"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := patchDispatcher(tt.d, tt.patch)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want refused as invalid: %s", err, tt.wantErr)
			}
		})
	}
}

func TestWebhookDispatcherQueueChangeStalls(t *testing.T) {
	ns := newNamespace(t)
	// No embedded block: the claim has the default size, and admission
	// cannot compare a block that was not there.
	d := createTestDispatcher(t, ns)
	markDispatcherAvailable(t, ns, "pool")
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "1 of 1")

	if err := patchDispatcher(d, `{"spec":{"queue":{"embedded":{"size":"5Gi"}}}}`); err != nil {
		t.Fatalf("setting the queue size: %v", err)
	}
	want := "StatefulSet " + ns + "/pool-dispatcher cannot take the change to spec.volumeClaimTemplates"
	got := waitForDispatcherCondition(t, d, hooklinev1.ConditionStalled, metav1.ConditionTrue, want)
	c := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionStalled)
	if c.Reason != hooklinev1.ReasonInvalidSpec {
		t.Errorf("Stalled reason = %q, want %q", c.Reason, hooklinev1.ReasonInvalidSpec)
	}
	if len(c.Message) > 300 || strings.Contains(c.Message, "PersistentVolumeClaim{") {
		t.Errorf("Stalled message is %d characters long, want a short one:\n%s", len(c.Message), c.Message)
	}
	if !strings.Contains(c.Message, "create a new dispatcher") {
		t.Errorf("Stalled message %q does not say what to do", c.Message)
	}
	waitForKstatus(t, d, status.FailedStatus)
	warnings := func() []eventsv1.Event {
		var out []eventsv1.Event
		for _, e := range eventsWithReason(t, ns, hooklinev1.ReasonInvalidSpec) {
			if e.Type == corev1.EventTypeWarning && e.Regarding.Name == d.Name {
				out = append(out, e)
			}
		}
		return out
	}
	eventually(t, dispatcherTestTimeout, func() (bool, string) {
		return len(warnings()) > 0, "no Warning event InvalidSpec about the dispatcher"
	})

	// Another reconciliation (the StatefulSet's status changes) meets the
	// same refusal: status follows, no second Warning.
	sts := &appsv1.StatefulSet{}
	waitForObject(t, types.NamespacedName{Namespace: ns, Name: "pool-dispatcher"}, sts, nil)
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(sts), sts); err != nil {
			return err
		}
		sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: sts.Status.ObservedGeneration}
		return k8sClient.Status().Update(suiteCtx, sts)
	}); err != nil {
		t.Fatalf("updating the StatefulSet's status: %v", err)
	}
	waitForObject(t, client.ObjectKeyFromObject(d), got, func() string {
		if got.Status.Replicas != 0 {
			return fmt.Sprintf("status.replicas = %d, want 0", got.Status.Replicas)
		}
		return ""
	})
	if ws := warnings(); len(ws) != 1 || ws[0].Series != nil {
		t.Errorf("got %d InvalidSpec Warnings %+v, want exactly one, emitted once", len(ws), ws)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionStalled); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Stalled = %+v after another reconciliation, want True", c)
	}

	// Putting the queue back lets the dispatcher go on.
	if err := patchDispatcher(d, `{"spec":{"queue":{"embedded":null}}}`); err != nil {
		t.Fatalf("restoring the queue: %v", err)
	}
	markDispatcherAvailable(t, ns, "pool")
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "1 of 1")
	waitForKstatus(t, d, status.CurrentStatus)
}

// createBlockingService creates, in ns, a Service of the name the dispatcher
// "pool" renders, which is not the dispatcher's.
func createBlockingService(t *testing.T, ns string, owners ...metav1.OwnerReference) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "pool-dispatcher", Namespace: ns, Labels: map[string]string{"app": "legacy"}, OwnerReferences: owners},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "legacy"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
	if err := k8sClient.Create(suiteCtx, svc); err != nil {
		t.Fatalf("creating the Service: %v", err)
	}
	return svc
}

func TestWebhookDispatcherObjectConflict(t *testing.T) {
	ns := newNamespace(t)
	svc := createBlockingService(t, ns)
	d := createTestDispatcher(t, ns)

	want := "Service " + ns + "/pool-dispatcher exists and is not this dispatcher's"
	got := waitForDispatcherCondition(t, d, hooklinev1.ConditionStalled, metav1.ConditionTrue, want)
	if c := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionStalled); c.Reason != "ObjectConflict" {
		t.Errorf("Stalled reason = %q, want ObjectConflict", c.Reason)
	}
	waitForKstatus(t, d, status.FailedStatus)
	eventually(t, dispatcherTestTimeout, func() (bool, string) {
		for _, e := range eventsWithReason(t, ns, "ObjectConflict") {
			if e.Type == corev1.EventTypeWarning && e.Regarding.Name == d.Name && e.Related != nil && e.Related.Kind == "Service" && e.Related.Name == svc.Name {
				return true, ""
			}
		}
		return false, "no Warning event ObjectConflict about the dispatcher and the Service"
	})

	// Nothing applied: the Service is as it was, nothing else exists.
	current := &corev1.Service{}
	if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(svc), current); err != nil {
		t.Fatalf("getting the Service: %v", err)
	}
	if len(current.OwnerReferences) != 0 || current.Labels["app.kubernetes.io/name"] != "" || len(current.Spec.Ports) != 1 || current.Spec.Selector["app"] != "legacy" {
		t.Errorf("the Service was taken over: owners %v, labels %v, ports %v, selector %v",
			current.OwnerReferences, current.Labels, current.Spec.Ports, current.Spec.Selector)
	}
	if current.ResourceVersion != svc.ResourceVersion {
		t.Errorf("the Service changed: resourceVersion %s, was %s", current.ResourceVersion, svc.ResourceVersion)
	}
	name := types.NamespacedName{Namespace: ns, Name: "pool-dispatcher"}
	for _, check := range []struct {
		key types.NamespacedName
		obj client.Object
	}{
		{name, &appsv1.StatefulSet{}},
		{name, &corev1.ServiceAccount{}},
		{name, &rbacv1.RoleBinding{}},
		{name, &policyv1.PodDisruptionBudget{}},
		{types.NamespacedName{Name: "hookline-dispatcher:" + ns + ":pool"}, &rbacv1.ClusterRoleBinding{}},
	} {
		if err := k8sClient.Get(suiteCtx, check.key, check.obj); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s was applied despite the conflict (err %v)", check.obj, check.key, err)
		}
	}
	if len(got.Finalizers) != 0 {
		t.Errorf("finalizers %v, want none while nothing is applied", got.Finalizers)
	}

	// Its owner deletes the Service: the dispatcher goes on by itself.
	if err := k8sClient.Delete(suiteCtx, svc); err != nil {
		t.Fatalf("deleting the Service: %v", err)
	}
	waitForObject(t, name, current, func() string { return controlledBy(current, d) })
	markDispatcherAvailable(t, ns, "pool")
	waitForDispatcherCondition(t, d, hooklinev1.ConditionReady, metav1.ConditionTrue, "1 of 1")
}

func TestWebhookDispatcherWaitsForPreviousObjects(t *testing.T) {
	ns := newNamespace(t)
	// Left by a dispatcher of the same name, deleted: the garbage collector
	// (which the test server does not run) would delete it.
	svc := createBlockingService(t, ns, metav1.OwnerReference{
		APIVersion: "hookline.dev/v1alpha1", Kind: "WebhookDispatcher", Name: "pool",
		UID: "00000000-0000-0000-0000-000000000001", Controller: ptr.To(true),
	})
	d := createTestDispatcher(t, ns)
	got := waitForDispatcherCondition(t, d, hooklinev1.ConditionReconciling, metav1.ConditionTrue, "Waiting for the garbage collector to delete Service "+ns+"/pool-dispatcher")
	if s, msg := kstatusOf(t, got); s != status.InProgressStatus {
		t.Errorf("kstatus = %s (%s), want InProgress", s, msg)
	}
	if err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: "pool-dispatcher"}, &appsv1.StatefulSet{}); !apierrors.IsNotFound(err) {
		t.Errorf("the StatefulSet was applied while waiting (err %v)", err)
	}

	if err := k8sClient.Delete(suiteCtx, svc); err != nil {
		t.Fatalf("deleting the Service as the garbage collector would: %v", err)
	}
	current := &corev1.Service{}
	waitForObject(t, client.ObjectKeyFromObject(svc), current, func() string { return controlledBy(current, d) })
}

// waitForReadyReplicas waits until the dispatcher's Ready condition has
// want with exactly message, for its current generation, and
// status.readyReplicas is ready.
func waitForReadyReplicas(t *testing.T, d *hooklinev1.WebhookDispatcher, want metav1.ConditionStatus, message string, ready int32) {
	t.Helper()
	got := &hooklinev1.WebhookDispatcher{}
	waitForObject(t, client.ObjectKeyFromObject(d), got, func() string {
		c := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionReady)
		if c == nil || c.Status != want || c.Message != message || got.Status.ReadyReplicas != ready || got.Status.ObservedGeneration != got.Generation {
			return fmt.Sprintf("Ready %+v, readyReplicas %d; want %s %q and %d", c, got.Status.ReadyReplicas, want, message, ready)
		}
		return ""
	})
}

func TestWebhookDispatcherReadyFromInstanceLeases(t *testing.T) {
	ns := newNamespace(t)
	d := createTestDispatcher(t, ns)
	// Its pod is Ready, but no dispatcher process serves in it.
	markStatefulSetAvailable(t, ns, "pool")
	waitForReadyReplicas(t, d, metav1.ConditionFalse, "0 of 1 dispatcher instances running", 0)
	waitForKstatus(t, d, status.InProgressStatus)

	// The instance announces itself, for a short Lease.
	lease := announceInstance(t, ns, "pool", "pool-dispatcher-0", testClock.Now(), 2, nil)
	waitForReadyReplicas(t, d, metav1.ConditionTrue, "1 of 1 dispatcher instances running", 1)
	waitForKstatus(t, d, status.CurrentStatus)
	// It crashes: nobody renews the Lease, time passes.
	testClock.Step(3 * time.Second)
	waitForReadyReplicas(t, d, metav1.ConditionFalse, "0 of 1 dispatcher instances running", 0)
	waitForKstatus(t, d, status.InProgressStatus)

	// It comes back and renews the expired Lease, which is news.
	announceInstance(t, ns, "pool", "pool-dispatcher-0", testClock.Now(), 2, nil)
	waitForReadyReplicas(t, d, metav1.ConditionTrue, "1 of 1 dispatcher instances running", 1)
	// It crashes again. By now the reconciliations that creating the
	// dispatcher set off are long done, and nothing changes in the API
	// server: only the requeue at the Lease's expiry can notice.
	testClock.Step(3 * time.Second)
	waitForReadyReplicas(t, d, metav1.ConditionFalse, "0 of 1 dispatcher instances running", 0)

	announceInstance(t, ns, "pool", "pool-dispatcher-0", testClock.Now(), testInstanceLeaseSeconds, nil)
	waitForReadyReplicas(t, d, metav1.ConditionTrue, "1 of 1 dispatcher instances running", 1)

	// A graceful stop deletes the Lease.
	if err := k8sClient.Delete(suiteCtx, lease); err != nil {
		t.Fatalf("deleting the Lease: %v", err)
	}
	waitForReadyReplicas(t, d, metav1.ConditionFalse, "0 of 1 dispatcher instances running", 0)
}

func TestWebhookDispatcherCountsOnlyItsInstanceLeases(t *testing.T) {
	ns := newNamespace(t)
	elsewhere := newNamespace(t)
	d := createTestDispatcher(t, ns, func(d *hooklinev1.WebhookDispatcher) {
		d.Spec.Replicas = ptr.To[int32](2)
		d.Spec.Queue.External = &hooklinev1.ExternalQueue{URL: "nats://nats:4222"}
	})
	waitForReadyReplicas(t, d, metav1.ConditionFalse, "0 of 2 dispatcher instances running", 0)

	now := testClock.Now()
	// Live Leases that are not this dispatcher's instances: another
	// dispatcher's, one without the role label, one of another role, and
	// one of a dispatcher of the same name in another namespace.
	announceInstance(t, ns, "other", "other-dispatcher-0", now, 3600, nil)
	announceInstance(t, ns, "pool", "unlabelled", now, 3600, map[string]string{hooklinev1.LabelDispatcher: "pool"})
	announceInstance(t, ns, "pool", "elected", now, 3600, map[string]string{hooklinev1.LabelDispatcher: "pool", hooklinev1.LabelLeaseRole: "status-writer"})
	announceInstance(t, elsewhere, "pool", "pool-dispatcher-0", now, 3600, nil)
	// Then one of its own. The cache sees Leases in the order they were
	// written, so when it counts this one it has seen the others too.
	announceInstance(t, ns, "pool", "pool-dispatcher-0", now, 3600, nil)
	waitForReadyReplicas(t, d, metav1.ConditionFalse, "1 of 2 dispatcher instances running", 1)

	announceInstance(t, ns, "pool", "pool-dispatcher-1", now, 3600, nil)
	waitForReadyReplicas(t, d, metav1.ConditionTrue, "2 of 2 dispatcher instances running", 2)
}

// TestWebhookDispatcherSecretRoleAllowsWatchByName acts as the dispatcher's
// ServiceAccount: the Role rendered for a subscription's namespace lets it
// get, list and watch the Secrets it names, narrowed to one name by a field
// selector as the dispatcher's informers are, and nothing wider.
func TestWebhookDispatcherSecretRoleAllowsWatchByName(t *testing.T) {
	dns := newNamespace(t)
	d := createTestDispatcher(t, dns, admitAllNamespaces)
	sns := newNamespace(t)
	if err := k8sClient.Create(suiteCtx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: sns, Name: "partner-token"},
		Data:       map[string][]byte{"token": []byte("t0ken")},
	}); err != nil {
		t.Fatalf("creating the header Secret: %v", err)
	}
	if err := k8sClient.Create(suiteCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: sns, Name: "unrelated"}}); err != nil {
		t.Fatalf("creating an unrelated Secret: %v", err)
	}
	createTestSubscription(t, sns, client.ObjectKeyFromObject(d))
	waitForObject(t, types.NamespacedName{Namespace: sns, Name: "hookline-dispatcher:" + dns + ":pool"}, &rbacv1.RoleBinding{}, nil)

	cfg := rest.CopyConfig(restConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + dns + ":pool-dispatcher"}
	secrets := kubernetes.NewForConfigOrDie(cfg).CoreV1().Secrets(sns)
	byName := func(name string) metav1.ListOptions {
		return metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()}
	}

	// RBAC takes a moment to see a new binding.
	eventually(t, dispatcherTestTimeout, func() (bool, string) {
		list, err := secrets.List(suiteCtx, byName("partner-token"))
		if err != nil {
			return false, fmt.Sprintf("listing Secret partner-token by name: %v", err)
		}
		if len(list.Items) != 1 || list.Items[0].Name != "partner-token" {
			return false, fmt.Sprintf("listed %d Secrets, want partner-token alone", len(list.Items))
		}
		return true, ""
	})
	w, err := secrets.Watch(suiteCtx, byName("partner-token"))
	if err != nil {
		t.Fatalf("watching Secret partner-token by name: %v", err)
	}
	select {
	case ev := <-w.ResultChan():
		if s, ok := ev.Object.(*corev1.Secret); !ok || ev.Type != watch.Added || s.Name != "partner-token" {
			t.Errorf("first watch event %s %T, want ADDED of Secret partner-token", ev.Type, ev.Object)
		}
	case <-time.After(time.Until(testenv.GiveUpAt(t))):
		t.Errorf("no watch event")
	}
	w.Stop()
	if _, err := secrets.Get(suiteCtx, "partner-token", metav1.GetOptions{}); err != nil {
		t.Errorf("getting Secret partner-token: %v", err)
	}

	// Not narrowed to a granted name: refused.
	if _, err := secrets.List(suiteCtx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing every Secret: err %v, want Forbidden", err)
	}
	if w, err := secrets.Watch(suiteCtx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		if err == nil {
			w.Stop()
		}
		t.Errorf("watching every Secret: err %v, want Forbidden", err)
	}
	if _, err := secrets.List(suiteCtx, byName("unrelated")); !apierrors.IsForbidden(err) {
		t.Errorf("listing Secret unrelated by name: err %v, want Forbidden", err)
	}
	if w, err := secrets.Watch(suiteCtx, byName("unrelated")); !apierrors.IsForbidden(err) {
		if err == nil {
			w.Stop()
		}
		t.Errorf("watching Secret unrelated by name: err %v, want Forbidden", err)
	}
	if _, err := secrets.Get(suiteCtx, "unrelated", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("getting Secret unrelated: err %v, want Forbidden", err)
	}
}
