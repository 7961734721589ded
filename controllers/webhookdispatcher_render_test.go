package controllers

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

const renderTestImage = "registry.example/hookline/hookline:v1"

// dispatcherFixture is a dispatcher as the API server returns it after
// defaulting, changed by mutate.
func dispatcherFixture(mutate ...func(*hooklinev1.WebhookDispatcher)) *hooklinev1.WebhookDispatcher {
	d := &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: "pool", Namespace: "platform", UID: "0c1d2e3f", Generation: 2},
		Spec: hooklinev1.WebhookDispatcherSpec{
			Replicas:               ptr.To[int32](1),
			AllowedNamespaces:      hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromSame},
			ProducerAuthentication: hooklinev1.ProducerAuthServiceAccountToken,
		},
	}
	for _, m := range mutate {
		m(d)
	}
	return d
}

// typed converts an apply configuration to the API type it describes.
func typed[T any](t *testing.T, cfg any) *T {
	t.Helper()
	out, err := dispatcherConvert[T](cfg)
	if err != nil {
		t.Fatalf("converting %T: %v", cfg, err)
	}
	return out
}

func renderFixture(t *testing.T, d *hooklinev1.WebhookDispatcher) dispatcherObjects {
	t.Helper()
	objs, err := renderDispatcher(d, renderTestImage, "hookline-dispatcher")
	if err != nil {
		t.Fatalf("rendering: %v", err)
	}
	return objs
}

func renderedPod(t *testing.T, d *hooklinev1.WebhookDispatcher) (*appsv1.StatefulSet, corev1.PodSpec, corev1.Container) {
	t.Helper()
	sts := typed[appsv1.StatefulSet](t, renderFixture(t, d).statefulSet)
	pod := sts.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	return sts, pod, pod.Containers[0]
}

func TestWebhookDispatcherRenderOwnerReferences(t *testing.T) {
	d := dispatcherFixture()
	objs := renderFixture(t, d)
	want := []metav1.OwnerReference{{
		APIVersion: "hookline.dev/v1alpha1", Kind: "WebhookDispatcher", Name: "pool", UID: "0c1d2e3f",
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
	for name, meta := range map[string]metav1.ObjectMeta{
		"ServiceAccount":      typed[corev1.ServiceAccount](t, objs.serviceAccount).ObjectMeta,
		"RoleBinding":         typed[rbacv1.RoleBinding](t, objs.roleBinding).ObjectMeta,
		"Service":             typed[corev1.Service](t, objs.service).ObjectMeta,
		"PodDisruptionBudget": typed[policyv1.PodDisruptionBudget](t, objs.podDisruptionBudget).ObjectMeta,
		"StatefulSet":         typed[appsv1.StatefulSet](t, objs.statefulSet).ObjectMeta,
	} {
		if meta.Name != "pool-dispatcher" || meta.Namespace != "platform" {
			t.Errorf("%s is %s/%s, want platform/pool-dispatcher", name, meta.Namespace, meta.Name)
		}
		if diff := cmp.Diff(want, meta.OwnerReferences); diff != "" {
			t.Errorf("%s owner references (-want +got):\n%s", name, diff)
		}
		if diff := cmp.Diff(map[string]string{
			"app.kubernetes.io/name": "hookline-dispatcher", "app.kubernetes.io/instance": "pool",
			"app.kubernetes.io/component": "dispatcher", "app.kubernetes.io/managed-by": "hookline",
		}, meta.Labels); diff != "" {
			t.Errorf("%s labels (-want +got):\n%s", name, diff)
		}
	}
	crb := typed[rbacv1.ClusterRoleBinding](t, objs.clusterRoleBinding)
	if len(crb.OwnerReferences) != 0 {
		t.Errorf("the cluster-scoped ClusterRoleBinding has owner references %v", crb.OwnerReferences)
	}
	if crb.Labels["hookline.dev/dispatcher-namespace"] != "platform" || crb.Labels["hookline.dev/dispatcher-name"] != "pool" {
		t.Errorf("ClusterRoleBinding labels %v do not lead back to the dispatcher", crb.Labels)
	}
}

func TestWebhookDispatcherRenderDefaults(t *testing.T) {
	sts, pod, c := renderedPod(t, dispatcherFixture())

	if got := *sts.Spec.Replicas; got != 1 {
		t.Errorf("replicas = %d, want 1", got)
	}
	if sts.Spec.ServiceName != "pool-dispatcher" {
		t.Errorf("serviceName = %q", sts.Spec.ServiceName)
	}
	wantSelector := map[string]string{"app.kubernetes.io/name": "hookline-dispatcher", "app.kubernetes.io/instance": "pool"}
	if diff := cmp.Diff(wantSelector, sts.Spec.Selector.MatchLabels); diff != "" {
		t.Errorf("selector (-want +got):\n%s", diff)
	}
	for k, v := range wantSelector {
		if sts.Spec.Template.Labels[k] != v {
			t.Errorf("pod template label %s = %q, want %q", k, sts.Spec.Template.Labels[k], v)
		}
	}
	if diff := cmp.Diff(&appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
	}, sts.Spec.PersistentVolumeClaimRetentionPolicy); diff != "" {
		t.Errorf("claim retention (-want +got):\n%s", diff)
	}

	// The embedded queue's volume.
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volume claim template, got %d", len(sts.Spec.VolumeClaimTemplates))
	}
	claim := sts.Spec.VolumeClaimTemplates[0]
	if claim.Name != "data" || claim.Kind != "" || claim.APIVersion != "" {
		t.Errorf("claim template is %s %q, want an untyped template named data", claim.Kind, claim.Name)
	}
	if diff := cmp.Diff([]corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, claim.Spec.AccessModes); diff != "" {
		t.Errorf("access modes (-want +got):\n%s", diff)
	}
	if got := claim.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("claim size = %s, want 1Gi", got.String())
	}
	if claim.Spec.StorageClassName != nil {
		t.Errorf("storageClassName = %q, want the cluster default", *claim.Spec.StorageClassName)
	}

	// Restricted Pod Security.
	wantPodSecurity := &corev1.PodSecurityContext{
		RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](65532), FSGroup: ptr.To[int64](65532),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if diff := cmp.Diff(wantPodSecurity, pod.SecurityContext); diff != "" {
		t.Errorf("pod security context (-want +got):\n%s", diff)
	}
	wantSecurity := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), RunAsNonRoot: ptr.To(true),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	if diff := cmp.Diff(wantSecurity, c.SecurityContext); diff != "" {
		t.Errorf("container security context (-want +got):\n%s", diff)
	}

	if c.Name != "dispatcher" || c.Image != renderTestImage {
		t.Errorf("container %q runs %q, want dispatcher running %q", c.Name, c.Image, renderTestImage)
	}
	if diff := cmp.Diff([]string{"/dispatcher"}, c.Command); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
	wantArgs := []string{
		"--dispatcher-name=pool",
		"--dispatcher-namespace=$(POD_NAMESPACE)",
		"--data-dir=/var/lib/hookline",
		"--producer-authentication=ServiceAccountToken",
	}
	if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	wantEnv := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}},
	}
	if diff := cmp.Diff(wantEnv, c.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	wantPorts := []corev1.ContainerPort{
		{Name: "ingest", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "health", ContainerPort: 8081, Protocol: corev1.ProtocolTCP},
		{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
	}
	if diff := cmp.Diff(wantPorts, c.Ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}

	// Probes on the health port.
	for name, tc := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{
		"readiness": {c.ReadinessProbe, "/readyz"},
		"liveness":  {c.LivenessProbe, "/healthz"},
		"startup":   {c.StartupProbe, "/healthz"},
	} {
		if tc.probe == nil || tc.probe.HTTPGet == nil {
			t.Errorf("%s probe is not an HTTP GET: %+v", name, tc.probe)
			continue
		}
		if tc.probe.HTTPGet.Path != tc.path || tc.probe.HTTPGet.Port != intstr.FromString("health") {
			t.Errorf("%s probe gets %s on %s, want %s on health", name, tc.probe.HTTPGet.Path, tc.probe.HTTPGet.Port.String(), tc.path)
		}
	}
	if startup, live := c.StartupProbe, c.LivenessProbe; startup.PeriodSeconds*startup.FailureThreshold < 120 ||
		startup.PeriodSeconds*startup.FailureThreshold <= live.PeriodSeconds*live.FailureThreshold {
		t.Errorf("startup probe allows %ds, want a generous start (at least 2m, more than liveness)", startup.PeriodSeconds*startup.FailureThreshold)
	}

	// Volumes: a writable /tmp on a read-only root, the queue's data.
	wantMounts := []corev1.VolumeMount{
		{Name: "tmp", MountPath: "/tmp"},
		{Name: "data", MountPath: "/var/lib/hookline"},
	}
	if diff := cmp.Diff(wantMounts, c.VolumeMounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	wantVolumes := []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	if diff := cmp.Diff(wantVolumes, pod.Volumes); diff != "" {
		t.Errorf("volumes (-want +got):\n%s", diff)
	}

	if pod.ServiceAccountName != "pool-dispatcher" {
		t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != 60 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 60", pod.TerminationGracePeriodSeconds)
	}
	if pod.NodeSelector != nil || pod.Tolerations != nil || pod.Affinity != nil || pod.PriorityClassName != "" || pod.ImagePullSecrets != nil {
		t.Errorf("scheduling fields set without a spec asking for them: %+v", pod)
	}
}

func TestWebhookDispatcherRenderImage(t *testing.T) {
	_, _, c := renderedPod(t, dispatcherFixture(func(d *hooklinev1.WebhookDispatcher) {
		d.Spec.Image = "mirror.example/hookline:v2"
	}))
	if c.Image != "mirror.example/hookline:v2" {
		t.Errorf("image = %q, want the spec's", c.Image)
	}
}

func TestWebhookDispatcherRenderEmbeddedQueue(t *testing.T) {
	sts, _, _ := renderedPod(t, dispatcherFixture(func(d *hooklinev1.WebhookDispatcher) {
		d.Spec.Queue.Embedded = &hooklinev1.EmbeddedQueue{Size: ptr.To(resource.MustParse("20Gi")), StorageClassName: ptr.To("fast-ssd")}
	}))
	claim := sts.Spec.VolumeClaimTemplates[0]
	if got := claim.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("20Gi")) != 0 {
		t.Errorf("claim size = %s, want 20Gi", got.String())
	}
	if claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName != "fast-ssd" {
		t.Errorf("storageClassName = %v, want fast-ssd", claim.Spec.StorageClassName)
	}
}

func TestWebhookDispatcherRenderExternalQueue(t *testing.T) {
	tests := []struct {
		name        string
		queue       hooklinev1.ExternalQueue
		wantArgs    []string
		wantVolumes []corev1.Volume
		wantMounts  []corev1.VolumeMount
	}{
		{
			name:  "with credentials",
			queue: hooklinev1.ExternalQueue{URL: "nats://nats-0.nats:4222,nats://nats-1.nats:4222", CredentialsSecretRef: &hooklinev1.LocalObjectReference{Name: "nats-user"}, StreamReplicas: 5},
			wantArgs: []string{
				"--dispatcher-name=pool", "--dispatcher-namespace=$(POD_NAMESPACE)",
				"--queue-url=nats://nats-0.nats:4222,nats://nats-1.nats:4222",
				"--queue-credentials=/etc/hookline/nats/nats.creds",
				"--stream-replicas=5",
				"--producer-authentication=None",
			},
			wantVolumes: []corev1.Volume{
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "nats-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName: "nats-user", Items: []corev1.KeyToPath{{Key: "nats.creds", Path: "nats.creds"}}, DefaultMode: ptr.To[int32](0o440),
				}}},
			},
			wantMounts: []corev1.VolumeMount{
				{Name: "tmp", MountPath: "/tmp"},
				{Name: "nats-credentials", MountPath: "/etc/hookline/nats", ReadOnly: true},
			},
		},
		{
			name:  "without credentials, stream replicas defaulted",
			queue: hooklinev1.ExternalQueue{URL: "tls://nats.example:4222"},
			wantArgs: []string{
				"--dispatcher-name=pool", "--dispatcher-namespace=$(POD_NAMESPACE)",
				"--queue-url=tls://nats.example:4222",
				"--stream-replicas=3",
				"--producer-authentication=None",
			},
			wantVolumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			wantMounts:  []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts, pod, c := renderedPod(t, dispatcherFixture(func(d *hooklinev1.WebhookDispatcher) {
				d.Spec.Replicas = ptr.To[int32](3)
				d.Spec.Queue.External = &tt.queue
				d.Spec.ProducerAuthentication = hooklinev1.ProducerAuthNone
			}))
			if len(sts.Spec.VolumeClaimTemplates) != 0 {
				t.Errorf("an external queue needs no volume claim, got %d", len(sts.Spec.VolumeClaimTemplates))
			}
			if *sts.Spec.Replicas != 3 {
				t.Errorf("replicas = %d, want 3", *sts.Spec.Replicas)
			}
			if diff := cmp.Diff(tt.wantArgs, c.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantVolumes, pod.Volumes); diff != "" {
				t.Errorf("volumes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantMounts, c.VolumeMounts); diff != "" {
				t.Errorf("mounts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWebhookDispatcherRenderScheduling(t *testing.T) {
	affinity := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "egress", Operator: corev1.NodeSelectorOpIn, Values: []string{"static"}}},
		}}},
	}}
	tolerations := []corev1.Toleration{
		{Key: "egress", Operator: corev1.TolerationOpEqual, Value: "static", Effect: corev1.TaintEffectNoSchedule},
		{Key: "spot", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](30)},
	}
	_, pod, _ := renderedPod(t, dispatcherFixture(func(d *hooklinev1.WebhookDispatcher) {
		d.Spec.NodeSelector = map[string]string{"topology.kubernetes.io/zone": "eu-west-1a"}
		d.Spec.Tolerations = tolerations
		d.Spec.Affinity = affinity
		d.Spec.PriorityClassName = "platform-critical"
		d.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "mirror-pull"}}
	}))
	if diff := cmp.Diff(map[string]string{"topology.kubernetes.io/zone": "eu-west-1a"}, pod.NodeSelector); diff != "" {
		t.Errorf("nodeSelector (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(tolerations, pod.Tolerations); diff != "" {
		t.Errorf("tolerations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(affinity, pod.Affinity); diff != "" {
		t.Errorf("affinity (-want +got):\n%s", diff)
	}
	if pod.PriorityClassName != "platform-critical" {
		t.Errorf("priorityClassName = %q", pod.PriorityClassName)
	}
	if diff := cmp.Diff([]corev1.LocalObjectReference{{Name: "mirror-pull"}}, pod.ImagePullSecrets); diff != "" {
		t.Errorf("imagePullSecrets (-want +got):\n%s", diff)
	}
}

func TestWebhookDispatcherRenderResources(t *testing.T) {
	override := &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("2Gi")},
	}
	tests := []struct {
		name string
		spec *corev1.ResourceRequirements
		want corev1.ResourceRequirements
	}{
		{"default", nil, corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		}},
		{"override", override, *override},
		{"override requests only", &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
		}, corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, c := renderedPod(t, dispatcherFixture(func(d *hooklinev1.WebhookDispatcher) { d.Spec.Resources = tt.spec }))
			if !equalResources(tt.want, c.Resources) {
				t.Errorf("resources = %+v, want %+v", c.Resources, tt.want)
			}
		})
	}
}

func equalResources(a, b corev1.ResourceRequirements) bool {
	eq := func(x, y corev1.ResourceList) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || v.Cmp(w) != 0 {
				return false
			}
		}
		return true
	}
	return eq(a.Requests, b.Requests) && eq(a.Limits, b.Limits)
}

func TestWebhookDispatcherRenderServiceAndBudget(t *testing.T) {
	objs := renderFixture(t, dispatcherFixture())
	selector := map[string]string{"app.kubernetes.io/name": "hookline-dispatcher", "app.kubernetes.io/instance": "pool"}

	svc := typed[corev1.Service](t, objs.service)
	wantSvc := corev1.ServiceSpec{
		Type:     corev1.ServiceTypeClusterIP,
		Selector: selector,
		Ports: []corev1.ServicePort{
			{Name: "ingest", Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("http"), Port: 8080, TargetPort: intstr.FromString("ingest")},
			{Name: "metrics", Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("http"), Port: 9090, TargetPort: intstr.FromString("metrics")},
		},
	}
	if diff := cmp.Diff(wantSvc, svc.Spec); diff != "" {
		t.Errorf("Service spec (-want +got):\n%s", diff)
	}
	if got, want := dispatcherAddress(dispatcherFixture()), "http://pool-dispatcher.platform.svc:8080"; got != want {
		t.Errorf("address = %q, want %q", got, want)
	}

	pdb := typed[policyv1.PodDisruptionBudget](t, objs.podDisruptionBudget)
	wantPDB := policyv1.PodDisruptionBudgetSpec{
		MaxUnavailable:             ptr.To(intstr.FromInt32(1)),
		Selector:                   &metav1.LabelSelector{MatchLabels: selector},
		UnhealthyPodEvictionPolicy: ptr.To(policyv1.AlwaysAllow),
	}
	if diff := cmp.Diff(wantPDB, pdb.Spec); diff != "" {
		t.Errorf("PodDisruptionBudget spec (-want +got):\n%s", diff)
	}
}

func TestWebhookDispatcherRenderRBAC(t *testing.T) {
	objs := renderFixture(t, dispatcherFixture())
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "pool-dispatcher", Namespace: "platform"}}

	// Leases and Events in its own namespace come from the local
	// ClusterRole, bound there: no Role whose rules the manager would have
	// to hold everywhere.
	rb := typed[rbacv1.RoleBinding](t, objs.roleBinding)
	if rb.Name != "pool-dispatcher" || rb.Namespace != "platform" {
		t.Errorf("RoleBinding is %s/%s, want platform/pool-dispatcher", rb.Namespace, rb.Name)
	}
	if diff := cmp.Diff(rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "hookline-dispatcher-local"}, rb.RoleRef); diff != "" {
		t.Errorf("RoleBinding roleRef (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(subject, rb.Subjects); diff != "" {
		t.Errorf("RoleBinding subjects (-want +got):\n%s", diff)
	}

	crb := typed[rbacv1.ClusterRoleBinding](t, objs.clusterRoleBinding)
	if crb.Name != "hookline-dispatcher:platform:pool" {
		t.Errorf("ClusterRoleBinding name = %q", crb.Name)
	}
	if diff := cmp.Diff(rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "hookline-dispatcher"}, crb.RoleRef); diff != "" {
		t.Errorf("ClusterRoleBinding roleRef (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(subject, crb.Subjects); diff != "" {
		t.Errorf("ClusterRoleBinding subjects (-want +got):\n%s", diff)
	}

	sa := typed[corev1.ServiceAccount](t, objs.serviceAccount)
	if sa.Name != "pool-dispatcher" {
		t.Errorf("ServiceAccount name = %q", sa.Name)
	}
}

func subscriptionFixture(name, signingWith string, mutate ...func(*hooklinev1.WebhookSubscriptionSpec)) hooklinev1.WebhookSubscription {
	s := hooklinev1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Spec: hooklinev1.WebhookSubscriptionSpec{
			URL:        "https://hooks.example/" + name,
			EventTypes: []string{"order.*"},
			Signing:    hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: signingWith}},
		},
	}
	for _, m := range mutate {
		m(&s.Spec)
	}
	return s
}

func TestWebhookDispatcherSecretAccess(t *testing.T) {
	subs := []hooklinev1.WebhookSubscription{
		subscriptionFixture("orders", "shop-signing", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{
				{Name: "X-Static", Value: ptr.To("yes")},
				{Name: "Authorization", ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "partner-token", Key: "token"}}},
			}
			s.TLS = &hooklinev1.TLSSpec{
				CA:                         &hooklinev1.CASource{ConfigMapKeyRef: &hooklinev1.SecretKeyReference{Name: "partner-ca", Key: "ca.crt"}},
				ClientCertificateSecretRef: &hooklinev1.LocalObjectReference{Name: "client-cert"},
			}
		}),
		subscriptionFixture("refunds", "shop-signing", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.TLS = &hooklinev1.TLSSpec{CA: &hooklinev1.CASource{SecretKeyRef: &hooklinev1.SecretKeyReference{Name: "bank-ca", Key: "ca.crt"}}}
			s.Headers = []hooklinev1.Header{
				{Name: "Authorization", ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "partner-token", Key: "other"}}},
			}
		}),
		subscriptionFixture("audit", "audit-signing"),
	}
	signing := map[string]string{"shop-signing": "shop-keys", "audit-signing": "audit-signing"}
	access := dispatcherSecretAccessFor(subs, func(n string) string { return signing[n] })
	d := dispatcherFixture()

	role, binding := renderDispatcherSecretAccess(d, "shop", access)
	r := typed[rbacv1.Role](t, role)
	if r.Name != "hookline-dispatcher:platform:pool" || r.Namespace != "shop" {
		t.Errorf("Role is %s/%s", r.Namespace, r.Name)
	}
	wantRules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"audit-signing", "bank-ca", "client-cert", "partner-token", "shop-keys"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"partner-ca"}, Verbs: []string{"get", "list", "watch"}},
	}
	if diff := cmp.Diff(wantRules, r.Rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if len(r.OwnerReferences) != 0 {
		t.Errorf("a Role in another namespace cannot be owned, got %v", r.OwnerReferences)
	}
	if r.Labels["hookline.dev/dispatcher-namespace"] != "platform" || r.Labels["hookline.dev/dispatcher-name"] != "pool" {
		t.Errorf("labels %v do not lead back to the dispatcher", r.Labels)
	}
	b := typed[rbacv1.RoleBinding](t, binding)
	if diff := cmp.Diff(rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "hookline-dispatcher:platform:pool"}, b.RoleRef); diff != "" {
		t.Errorf("roleRef (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]rbacv1.Subject{{Kind: "ServiceAccount", Name: "pool-dispatcher", Namespace: "platform"}}, b.Subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}

	// Only the signing Secret: no empty ConfigMap rule. In the dispatcher's
	// own namespace the Role can be owned.
	role, _ = renderDispatcherSecretAccess(d, "platform", dispatcherSecretAccessFor(subs[2:], func(n string) string { return n }))
	r = typed[rbacv1.Role](t, role)
	wantRules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"audit-signing"}, Verbs: []string{"get", "list", "watch"}},
	}
	if diff := cmp.Diff(wantRules, r.Rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if len(r.OwnerReferences) != 1 || r.OwnerReferences[0].UID != d.UID {
		t.Errorf("owner references = %v, want the dispatcher", r.OwnerReferences)
	}
}

func TestWebhookDispatcherRBACNames(t *testing.T) {
	// With dashes, "a-b"/"c" and "a"/"b-c" both made hookline-dispatcher-a-b-c.
	tests := []struct{ namespace, name, want string }{
		{"a-b", "c", "hookline-dispatcher:a-b:c"},
		{"a", "b-c", "hookline-dispatcher:a:b-c"},
		{"platform", "pool", "hookline-dispatcher:platform:pool"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		d := dispatcherFixture(func(d *hooklinev1.WebhookDispatcher) { d.Namespace, d.Name = tt.namespace, tt.name })
		for what, got := range map[string]string{
			"Secret access Role":   dispatcherSecretRoleName(d),
			"ClusterRoleBinding":   dispatcherClusterRoleBindingName(d),
			"rendered Role":        typed[rbacv1.Role](t, first(renderDispatcherSecretAccess(d, "shop", dispatcherSecretAccess{}))).Name,
			"rendered CRB":         typed[rbacv1.ClusterRoleBinding](t, renderFixture(t, d).clusterRoleBinding).Name,
			"rendered RoleBinding": typed[rbacv1.RoleBinding](t, second(renderDispatcherSecretAccess(d, "shop", dispatcherSecretAccess{}))).Name,
		} {
			if got != tt.want {
				t.Errorf("%s of %s/%s = %q, want %q", what, tt.namespace, tt.name, got, tt.want)
			}
		}
		if other, ok := seen[tt.want]; ok {
			t.Errorf("%s/%s and %s share the name %q", tt.namespace, tt.name, other, tt.want)
		}
		seen[tt.want] = tt.namespace + "/" + tt.name
		if key, ok := dispatcherOfRBACName(tt.want); !ok || key.Namespace != tt.namespace || key.Name != tt.name {
			t.Errorf("dispatcherOfRBACName(%q) = %v, %v, want %s/%s", tt.want, key, ok, tt.namespace, tt.name)
		}
	}
}

func first[A, B any](a A, _ B) A  { return a }
func second[A, B any](_ A, b B) B { return b }

func TestWebhookDispatchersNaming(t *testing.T) {
	tests := []struct {
		name string
		obj  metav1.ObjectMeta
		want []types.NamespacedName
	}{
		{"rendered in the dispatcher's namespace", metav1.ObjectMeta{Namespace: "platform", Name: "pool-dispatcher"},
			[]types.NamespacedName{{Namespace: "platform", Name: "pool"}}},
		{"ClusterRoleBinding by name", metav1.ObjectMeta{Name: "hookline-dispatcher:platform:pool"},
			[]types.NamespacedName{{Namespace: "platform", Name: "pool"}}},
		{"Secret access Role by name and labels", metav1.ObjectMeta{Namespace: "shop", Name: "hookline-dispatcher:platform:pool",
			Labels: map[string]string{"hookline.dev/dispatcher-namespace": "platform", "hookline.dev/dispatcher-name": "pool"}},
			[]types.NamespacedName{{Namespace: "platform", Name: "pool"}}},
		{"labels alone", metav1.ObjectMeta{Namespace: "shop", Name: "whatever",
			Labels: map[string]string{"hookline.dev/dispatcher-namespace": "platform", "hookline.dev/dispatcher-name": "pool"}},
			[]types.NamespacedName{{Namespace: "platform", Name: "pool"}}},
		{"just the suffix", metav1.ObjectMeta{Namespace: "platform", Name: "-dispatcher"}, nil},
		{"cluster scoped with the suffix", metav1.ObjectMeta{Name: "pool-dispatcher"}, nil},
		{"prefix without a name", metav1.ObjectMeta{Name: "hookline-dispatcher:platform"}, nil},
		{"prefix with too many parts", metav1.ObjectMeta{Name: "hookline-dispatcher:platform:pool:x"}, nil},
		{"unrelated", metav1.ObjectMeta{Namespace: "platform", Name: "web"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, dispatchersNaming(&tt.obj)); diff != "" {
				t.Errorf("dispatchers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWebhookDispatcherManages(t *testing.T) {
	d := dispatcherFixture()
	ref := func(mutate func(*metav1.OwnerReference)) []metav1.OwnerReference {
		r := metav1.OwnerReference{APIVersion: "hookline.dev/v1alpha1", Kind: "WebhookDispatcher", Name: "pool", UID: d.UID, Controller: ptr.To(true)}
		mutate(&r)
		return []metav1.OwnerReference{r}
	}
	ours := map[string]string{"hookline.dev/dispatcher-namespace": "platform", "hookline.dev/dispatcher-name": "pool"}
	tests := []struct {
		name         string
		obj          metav1.ObjectMeta
		byLabels     bool
		wantManaged  bool
		wantPrevious bool
	}{
		{"controlled by the dispatcher", metav1.ObjectMeta{OwnerReferences: ref(func(*metav1.OwnerReference) {})}, false, true, false},
		{"no owner", metav1.ObjectMeta{}, false, false, false},
		{"owned, not controlled", metav1.ObjectMeta{OwnerReferences: ref(func(r *metav1.OwnerReference) { r.Controller = nil })}, false, false, false},
		{"controlled by another kind", metav1.ObjectMeta{OwnerReferences: ref(func(r *metav1.OwnerReference) { r.Kind = "Deployment"; r.APIVersion = "apps/v1" })}, false, false, false},
		{"controlled by another dispatcher", metav1.ObjectMeta{OwnerReferences: ref(func(r *metav1.OwnerReference) { r.Name = "other"; r.UID = "1" })}, false, false, false},
		{"controlled by a deleted dispatcher of the name", metav1.ObjectMeta{OwnerReferences: ref(func(r *metav1.OwnerReference) { r.UID = "earlier" })}, false, false, true},
		{"our labels do not stand for a controller reference", metav1.ObjectMeta{Labels: ours}, false, false, false},
		{"labelled", metav1.ObjectMeta{Labels: ours}, true, true, false},
		{"unlabelled", metav1.ObjectMeta{OwnerReferences: ref(func(*metav1.OwnerReference) {})}, true, false, false},
		{"labelled for another namespace", metav1.ObjectMeta{Labels: map[string]string{"hookline.dev/dispatcher-namespace": "elsewhere", "hookline.dev/dispatcher-name": "pool"}}, true, false, false},
		{"labelled for another name", metav1.ObjectMeta{Labels: map[string]string{"hookline.dev/dispatcher-namespace": "platform", "hookline.dev/dispatcher-name": "other"}}, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			managed, previous := dispatcherManages(d, &tt.obj, tt.byLabels)
			if managed != tt.wantManaged || previous != tt.wantPrevious {
				t.Errorf("got managed %v, previous %v; want %v, %v", managed, previous, tt.wantManaged, tt.wantPrevious)
			}
		})
	}
}

func TestWebhookDispatcherValidSpec(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*hooklinev1.WebhookDispatcher)
		wantMsg string // empty: valid
	}{
		{"defaults", func(*hooklinev1.WebhookDispatcher) {}, ""},
		{"scaled to zero", func(d *hooklinev1.WebhookDispatcher) { d.Spec.Replicas = ptr.To[int32](0) }, ""},
		{"several replicas on an external queue", func(d *hooklinev1.WebhookDispatcher) {
			d.Spec.Replicas = ptr.To[int32](3)
			d.Spec.Queue.External = &hooklinev1.ExternalQueue{URL: "nats://nats:4222"}
		}, ""},
		{"several replicas on the embedded queue", func(d *hooklinev1.WebhookDispatcher) { d.Spec.Replicas = ptr.To[int32](2) }, "embedded queue serves one replica"},
		{"both queues", func(d *hooklinev1.WebhookDispatcher) {
			d.Spec.Queue.Embedded = &hooklinev1.EmbeddedQueue{}
			d.Spec.Queue.External = &hooklinev1.ExternalQueue{URL: "nats://nats:4222"}
		}, "at most one of queue.embedded and queue.external"},
		{"selector missing", func(d *hooklinev1.WebhookDispatcher) {
			d.Spec.AllowedNamespaces = hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromSelector}
		}, "no selector is set"},
		{"selector malformed", func(d *hooklinev1.WebhookDispatcher) {
			d.Spec.AllowedNamespaces = hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromSelector, Selector: &metav1.LabelSelector{
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Resembles", Values: []string{"a"}}},
			}}
		}, "allowedNamespaces.selector"},
		{"longest name", func(d *hooklinev1.WebhookDispatcher) { d.Name = strings.Repeat("a", 41) }, ""},
		{"name too long", func(d *hooklinev1.WebhookDispatcher) { d.Name = strings.Repeat("a", 42) }, "at most 41"},
		{"name not a DNS label", func(d *hooklinev1.WebhookDispatcher) { d.Name = "eu.pool" }, "cannot name a Service"},
		{"name starting with a digit", func(d *hooklinev1.WebhookDispatcher) { d.Name = "1pool" }, "must start with a letter"},
		{"name ending with a dash", func(d *hooklinev1.WebhookDispatcher) { d.Name = "pool-" }, "cannot name a Service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, ok := validDispatcherSpec(dispatcherFixture(tt.mutate))
			if tt.wantMsg == "" {
				if !ok {
					t.Errorf("refused: %s", msg)
				}
				return
			}
			if ok || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("got (%q, %v), want refused with %q", msg, ok, tt.wantMsg)
			}
		})
	}
}
