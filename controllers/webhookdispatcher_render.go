package controllers

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/rules"
)

// The dispatcher pod's contract: ports, paths and mount points the
// dispatcher binary expects.
const (
	dispatcherContainerName = "dispatcher"
	dispatcherUID           = int64(65532)

	dispatcherPortIngest  = int32(8080)
	dispatcherPortHealth  = int32(8081)
	dispatcherPortMetrics = int32(9090)

	dispatcherDataVolume     = "data"
	dispatcherDataDir        = "/var/lib/hookline"
	dispatcherTmpVolume      = "tmp"
	dispatcherNATSVolume     = "nats-credentials"
	dispatcherNATSDir        = "/etc/hookline/nats"
	dispatcherNATSCredsKey   = "nats.creds"
	dispatcherDefaultStreams = int32(3)
)

// Labels of everything rendered for a dispatcher. The two hookline.dev
// labels mark the objects that cannot carry an owner reference (cluster
// scoped, or in another namespace), so cleanup and the watches find them.
const (
	dispatcherLabelName         = "app.kubernetes.io/name"
	dispatcherLabelInstance     = "app.kubernetes.io/instance"
	dispatcherLabelComponent    = "app.kubernetes.io/component"
	dispatcherLabelManagedBy    = "app.kubernetes.io/managed-by"
	dispatcherLabelRefNamespace = "hookline.dev/dispatcher-namespace"
	dispatcherLabelRefName      = "hookline.dev/dispatcher-name"

	dispatcherAppName = "hookline-dispatcher"
)

// dispatcherMaxStatefulSetName is the longest StatefulSet name whose pods can
// be created: the StatefulSet controller labels each pod with
// "<name>-<10-character revision hash>", and label values stop at 63.
const dispatcherMaxStatefulSetName = 52

var (
	dispatcherDefaultResources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("512Mi"),
		},
	}
	dispatcherDefaultQueueSize = resource.MustParse("1Gi")
)

// dispatcherObjectName is the name of every namespaced object rendered for
// the dispatcher in its own namespace.
func dispatcherObjectName(d *hooklinev1.WebhookDispatcher) string {
	return d.Name + dispatcherObjectSuffix
}

// dispatcherObjectSuffix ends the names of dispatcherObjectName.
const dispatcherObjectSuffix = "-dispatcher"

// dispatcherAddress is the in-cluster URL of the ingest API.
func dispatcherAddress(d *hooklinev1.WebhookDispatcher) string {
	return fmt.Sprintf("http://%s.%s.svc:%d", dispatcherObjectName(d), d.Namespace, dispatcherPortIngest)
}

// dispatcherRBACPrefix starts the names of the RBAC objects rendered for a
// dispatcher outside the reach of an owner reference.
const dispatcherRBACPrefix = "hookline-dispatcher:"

// dispatcherRBACName names the RBAC objects of a dispatcher that live outside
// its namespace or outside any namespace: "hookline-dispatcher:<ns>:<name>".
// Neither a namespace nor a dispatcher name can hold a colon (RBAC names
// can), so no two dispatchers share a name, as "a-b"/"c" and "a"/"b-c" would
// with dashes. A namespace is at most 63 characters and validDispatcherSpec
// keeps the dispatcher name short, so it stays far below the 253 allowed.
func dispatcherRBACName(d *hooklinev1.WebhookDispatcher) string {
	return dispatcherRBACPrefix + d.Namespace + ":" + d.Name
}

// dispatcherOfRBACName is the dispatcher an RBAC object named by
// dispatcherRBACName belongs to.
func dispatcherOfRBACName(name string) (types.NamespacedName, bool) {
	ns, dispatcher, ok := strings.Cut(strings.TrimPrefix(name, dispatcherRBACPrefix), ":")
	if !strings.HasPrefix(name, dispatcherRBACPrefix) || !ok || ns == "" || dispatcher == "" || strings.Contains(dispatcher, ":") {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: ns, Name: dispatcher}, true
}

// dispatchersNaming is the dispatchers whose rendered objects have o's name,
// or whose labels o carries: o is theirs, or stands in the way of theirs.
func dispatchersNaming(o metav1.Object) []types.NamespacedName {
	var keys []types.NamespacedName
	add := func(key types.NamespacedName) {
		if !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
	}
	if key, ok := dispatcherFromLabels(o.GetLabels()); ok {
		add(key)
	}
	if key, ok := dispatcherOfRBACName(o.GetName()); ok {
		add(key)
	}
	if name, ok := strings.CutSuffix(o.GetName(), dispatcherObjectSuffix); ok && name != "" && o.GetNamespace() != "" {
		add(types.NamespacedName{Namespace: o.GetNamespace(), Name: name})
	}
	return keys
}

// dispatcherClusterRoleBindingName names the binding of the dispatcher's
// ServiceAccount to the operator's dispatcher ClusterRole.
func dispatcherClusterRoleBindingName(d *hooklinev1.WebhookDispatcher) string {
	return dispatcherRBACName(d)
}

// dispatcherSecretRoleName names the Role (and RoleBinding) that lets the
// dispatcher read the Secrets of its subscriptions in one namespace. It
// carries the dispatcher's namespace, since dispatchers of several
// namespaces may serve the same namespace.
func dispatcherSecretRoleName(d *hooklinev1.WebhookDispatcher) string {
	return dispatcherRBACName(d)
}

// dispatcherLocalClusterRole is the ClusterRole bound, in the dispatcher's
// own namespace only, to every dispatcher: the operator's dispatcher
// ClusterRole name with "-local" appended (hookline-dispatcher-local, from
// config/rbac/dispatcher_local_clusterrole.yaml). It grants the Leases its
// instances announce themselves and elect a status writer with, and Events.
// Binding a ClusterRole in a namespace, rather than rendering a Role with
// those rules, spares the manager holding them cluster-wide: it needs only
// bind on the ClusterRole.
func dispatcherLocalClusterRole(clusterRole string) string {
	return clusterRole + "-local"
}

// dispatcherSelector selects the dispatcher's pods. It is immutable on the
// StatefulSet, so it holds only labels that never change.
func dispatcherSelector(d *hooklinev1.WebhookDispatcher) map[string]string {
	return map[string]string{dispatcherLabelName: dispatcherAppName, dispatcherLabelInstance: d.Name}
}

// dispatcherSelectorString is dispatcherSelector as the scale subresource
// reports it.
func dispatcherSelectorString(d *hooklinev1.WebhookDispatcher) string {
	return labels.SelectorFromSet(dispatcherSelector(d)).String()
}

func dispatcherLabels(d *hooklinev1.WebhookDispatcher) map[string]string {
	return map[string]string{
		dispatcherLabelName:      dispatcherAppName,
		dispatcherLabelInstance:  d.Name,
		dispatcherLabelComponent: "dispatcher",
		dispatcherLabelManagedBy: "hookline",
	}
}

// dispatcherRefLabels mark the objects that point back to the dispatcher
// without an owner reference.
func dispatcherRefLabels(d *hooklinev1.WebhookDispatcher) map[string]string {
	return map[string]string{dispatcherLabelRefNamespace: d.Namespace, dispatcherLabelRefName: d.Name}
}

// dispatcherFromLabels is the dispatcher an object labelled with
// dispatcherRefLabels belongs to.
func dispatcherFromLabels(l map[string]string) (types.NamespacedName, bool) {
	ns, name := l[dispatcherLabelRefNamespace], l[dispatcherLabelRefName]
	if ns == "" || name == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: ns, Name: name}, true
}

func dispatcherLabelsWithRef(d *hooklinev1.WebhookDispatcher) map[string]string {
	l := dispatcherLabels(d)
	for k, v := range dispatcherRefLabels(d) {
		l[k] = v
	}
	return l
}

// dispatcherManages says whether existing, an object of the name of one the
// dispatcher renders, is the dispatcher's to apply over. Objects in the
// dispatcher's namespace must carry its controller reference (byLabels
// false); the others, which cannot, its dispatcherRefLabels (byLabels true).
// previous reports an object controlled by an earlier dispatcher of the same
// name, which the garbage collector deletes.
func dispatcherManages(d *hooklinev1.WebhookDispatcher, existing metav1.Object, byLabels bool) (managed, previous bool) {
	if byLabels {
		key, ok := dispatcherFromLabels(existing.GetLabels())
		return ok && key == types.NamespacedName{Namespace: d.Namespace, Name: d.Name}, false
	}
	ref := metav1.GetControllerOfNoCopy(existing)
	if ref == nil || ref.Kind != "WebhookDispatcher" || ref.Name != d.Name || !strings.HasPrefix(ref.APIVersion, hooklinev1.GroupVersion.Group+"/") {
		return false, false
	}
	if ref.UID != d.UID {
		return false, true
	}
	return true, false
}

// dispatcherOwner is the controller reference every object in the
// dispatcher's namespace carries, so it is garbage collected with it and
// its changes reach the dispatcher's reconciler.
func dispatcherOwner(d *hooklinev1.WebhookDispatcher) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(hooklinev1.GroupVersion.String()).
		WithKind("WebhookDispatcher").
		WithName(d.Name).
		WithUID(d.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// validDispatcherSpec checks what the API server should have refused but an
// older one, without the CRD's validation rules, lets through. The message
// says what to change.
func validDispatcherSpec(d *hooklinev1.WebhookDispatcher) (string, bool) {
	if d.Spec.Queue.External == nil && d.Spec.Replicas != nil && *d.Spec.Replicas > 1 {
		return fmt.Sprintf("the embedded queue serves one replica, not %d: set replicas to 1 or use queue.external", *d.Spec.Replicas), false
	}
	if d.Spec.Queue.Embedded != nil && d.Spec.Queue.External != nil {
		return "set at most one of queue.embedded and queue.external", false
	}
	// A missing or malformed selector fails whatever the namespace.
	if _, err := admitsNamespace(d, &corev1.Namespace{}); err != nil {
		return err.Error(), false
	}
	name := dispatcherObjectName(d)
	if len(name) > dispatcherMaxStatefulSetName {
		return fmt.Sprintf("the name is too long: the dispatcher's StatefulSet %q may have at most %d characters, so the dispatcher name at most %d",
			name, dispatcherMaxStatefulSetName, dispatcherMaxStatefulSetName-len(dispatcherObjectSuffix)), false
	}
	if errs := validation.IsDNS1035Label(d.Name); len(errs) > 0 {
		return fmt.Sprintf("the name %q cannot name a Service: it must start with a letter, end with a letter or digit, and hold only lower-case letters, digits and '-'", d.Name), false
	}
	return "", true
}

// dispatcherObjects are the objects rendered for one dispatcher, applied in
// this order: the identity and its permissions before the pods that use
// them.
type dispatcherObjects struct {
	serviceAccount      *corev1ac.ServiceAccountApplyConfiguration
	roleBinding         *rbacv1ac.RoleBindingApplyConfiguration
	clusterRoleBinding  *rbacv1ac.ClusterRoleBindingApplyConfiguration
	service             *corev1ac.ServiceApplyConfiguration
	podDisruptionBudget *policyv1ac.PodDisruptionBudgetApplyConfiguration
	statefulSet         *appsv1ac.StatefulSetApplyConfiguration
}

// renderDispatcher computes every object the dispatcher needs apart from
// the per-namespace Secret access (renderDispatcherSecretAccess).
func renderDispatcher(d *hooklinev1.WebhookDispatcher, defaultImage, clusterRole string) (dispatcherObjects, error) {
	sts, err := renderDispatcherStatefulSet(d, defaultImage)
	if err != nil {
		return dispatcherObjects{}, err
	}
	return dispatcherObjects{
		serviceAccount:      renderDispatcherServiceAccount(d),
		roleBinding:         renderDispatcherRoleBinding(d, clusterRole),
		clusterRoleBinding:  renderDispatcherClusterRoleBinding(d, clusterRole),
		service:             renderDispatcherService(d),
		podDisruptionBudget: renderDispatcherPDB(d),
		statefulSet:         sts,
	}, nil
}

func renderDispatcherServiceAccount(d *hooklinev1.WebhookDispatcher) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(dispatcherObjectName(d), d.Namespace).
		WithLabels(dispatcherLabels(d)).
		WithOwnerReferences(dispatcherOwner(d))
}

// all is every object in the order they are applied.
func (o dispatcherObjects) all() []dispatcherApplyConfiguration {
	return []dispatcherApplyConfiguration{
		o.serviceAccount, o.roleBinding, o.clusterRoleBinding,
		o.service, o.podDisruptionBudget, o.statefulSet,
	}
}

// renderDispatcherRoleBinding grants what the dispatcher does in its own
// namespace (Leases, Events) by binding the local ClusterRole there
// (dispatcherLocalClusterRole). What it reads cluster-wide comes with the
// ClusterRoleBinding.
func renderDispatcherRoleBinding(d *hooklinev1.WebhookDispatcher, clusterRole string) *rbacv1ac.RoleBindingApplyConfiguration {
	return rbacv1ac.RoleBinding(dispatcherObjectName(d), d.Namespace).
		WithLabels(dispatcherLabels(d)).
		WithOwnerReferences(dispatcherOwner(d)).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(dispatcherLocalClusterRole(clusterRole))).
		WithSubjects(dispatcherSubject(d))
}

func dispatcherSubject(d *hooklinev1.WebhookDispatcher) *rbacv1ac.SubjectApplyConfiguration {
	return rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(dispatcherObjectName(d)).WithNamespace(d.Namespace)
}

// renderDispatcherClusterRoleBinding binds the operator's dispatcher
// ClusterRole (subscriptions, WebhookSecrets, TokenReview,
// SubjectAccessReview) to the dispatcher. Being cluster scoped it cannot be
// owned by the dispatcher: a finalizer deletes it.
func renderDispatcherClusterRoleBinding(d *hooklinev1.WebhookDispatcher, clusterRole string) *rbacv1ac.ClusterRoleBindingApplyConfiguration {
	return rbacv1ac.ClusterRoleBinding(dispatcherClusterRoleBindingName(d)).
		WithLabels(dispatcherLabelsWithRef(d)).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(clusterRole)).
		WithSubjects(dispatcherSubject(d))
}

func renderDispatcherService(d *hooklinev1.WebhookDispatcher) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(dispatcherObjectName(d), d.Namespace).
		WithLabels(dispatcherLabels(d)).
		WithOwnerReferences(dispatcherOwner(d)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(dispatcherSelector(d)).
			WithPorts(
				corev1ac.ServicePort().WithName("ingest").WithProtocol(corev1.ProtocolTCP).WithAppProtocol("http").
					WithPort(dispatcherPortIngest).WithTargetPort(intstr.FromString("ingest")),
				corev1ac.ServicePort().WithName("metrics").WithProtocol(corev1.ProtocolTCP).WithAppProtocol("http").
					WithPort(dispatcherPortMetrics).WithTargetPort(intstr.FromString("metrics")),
			))
}

// renderDispatcherPDB lets voluntary disruptions (node drains) take
// one instance at a time, and never block on an instance that is not
// healthy anyway.
func renderDispatcherPDB(d *hooklinev1.WebhookDispatcher) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	return policyv1ac.PodDisruptionBudget(dispatcherObjectName(d), d.Namespace).
		WithLabels(dispatcherLabels(d)).
		WithOwnerReferences(dispatcherOwner(d)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(dispatcherSelector(d))).
			WithUnhealthyPodEvictionPolicy(policyv1.AlwaysAllow))
}

// dispatcherReplicas is the number of instances the spec asks for.
func dispatcherReplicas(d *hooklinev1.WebhookDispatcher) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// dispatcherArgs are the dispatcher's command-line arguments.
func dispatcherArgs(d *hooklinev1.WebhookDispatcher) []string {
	args := []string{
		"--dispatcher-name=" + d.Name,
		"--dispatcher-namespace=$(POD_NAMESPACE)",
	}
	if ext := d.Spec.Queue.External; ext != nil {
		args = append(args, "--queue-url="+ext.URL)
		if ext.CredentialsSecretRef != nil {
			args = append(args, "--queue-credentials="+dispatcherNATSDir+"/"+dispatcherNATSCredsKey)
		}
		streams := ext.StreamReplicas
		if streams == 0 {
			streams = dispatcherDefaultStreams
		}
		args = append(args, fmt.Sprintf("--stream-replicas=%d", streams))
	} else {
		args = append(args, "--data-dir="+dispatcherDataDir)
	}
	auth := d.Spec.ProducerAuthentication
	if auth == "" {
		auth = hooklinev1.ProducerAuthServiceAccountToken
	}
	return append(args, "--producer-authentication="+string(auth))
}

func dispatcherHTTPProbe(path string) *corev1ac.ProbeApplyConfiguration {
	return corev1ac.Probe().WithHTTPGet(corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromString("health")))
}

// renderDispatcherStatefulSet renders the dispatcher pods: restricted Pod
// Security, read-only root file system, the embedded queue on a volume claim
// that outlives scale-downs and deletion (queued events are never lost with
// it).
func renderDispatcherStatefulSet(d *hooklinev1.WebhookDispatcher, defaultImage string) (*appsv1ac.StatefulSetApplyConfiguration, error) {
	image := d.Spec.Image
	if image == "" {
		image = defaultImage
	}
	resources := d.Spec.Resources
	if resources == nil {
		resources = &dispatcherDefaultResources
	}
	resourcesAC, err := dispatcherConvert[corev1ac.ResourceRequirementsApplyConfiguration](resources)
	if err != nil {
		return nil, fmt.Errorf("rendering resources: %w", err)
	}

	container := corev1ac.Container().
		WithName(dispatcherContainerName).
		WithImage(image).
		WithCommand("/dispatcher").
		WithArgs(dispatcherArgs(d)...).
		WithEnv(
			corev1ac.EnvVar().WithName("POD_NAME").WithValueFrom(corev1ac.EnvVarSource().
				WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("metadata.name"))),
			corev1ac.EnvVar().WithName("POD_NAMESPACE").WithValueFrom(corev1ac.EnvVarSource().
				WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("metadata.namespace"))),
		).
		WithPorts(
			corev1ac.ContainerPort().WithName("ingest").WithContainerPort(dispatcherPortIngest).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("health").WithContainerPort(dispatcherPortHealth).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("metrics").WithContainerPort(dispatcherPortMetrics).WithProtocol(corev1.ProtocolTCP),
		).
		WithReadinessProbe(dispatcherHTTPProbe("/readyz").WithPeriodSeconds(5).WithTimeoutSeconds(2).WithFailureThreshold(3)).
		WithLivenessProbe(dispatcherHTTPProbe("/healthz").WithPeriodSeconds(10).WithTimeoutSeconds(2).WithFailureThreshold(3)).
		// Recovering a large embedded queue after a crash can take minutes;
		// liveness must not kill it meanwhile.
		WithStartupProbe(dispatcherHTTPProbe("/healthz").WithPeriodSeconds(5).WithTimeoutSeconds(2).WithFailureThreshold(60)).
		WithResources(resourcesAC).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop(corev1.Capability("ALL")))).
		WithVolumeMounts(corev1ac.VolumeMount().WithName(dispatcherTmpVolume).WithMountPath("/tmp"))

	pod := corev1ac.PodSpec().
		WithServiceAccountName(dispatcherObjectName(d)).
		WithTerminationGracePeriodSeconds(60).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(dispatcherUID).
			WithRunAsGroup(dispatcherUID).
			WithFSGroup(dispatcherUID).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithVolumes(corev1ac.Volume().WithName(dispatcherTmpVolume).WithEmptyDir(corev1ac.EmptyDirVolumeSource()))

	var claims []*corev1ac.PersistentVolumeClaimApplyConfiguration
	if ext := d.Spec.Queue.External; ext != nil {
		if ext.CredentialsSecretRef != nil {
			pod.WithVolumes(corev1ac.Volume().WithName(dispatcherNATSVolume).WithSecret(corev1ac.SecretVolumeSource().
				WithSecretName(ext.CredentialsSecretRef.Name).
				WithItems(corev1ac.KeyToPath().WithKey(dispatcherNATSCredsKey).WithPath(dispatcherNATSCredsKey)).
				WithDefaultMode(0o440)))
			container.WithVolumeMounts(corev1ac.VolumeMount().WithName(dispatcherNATSVolume).WithMountPath(dispatcherNATSDir).WithReadOnly(true))
		}
	} else {
		size := dispatcherDefaultQueueSize
		var class *string
		if emb := d.Spec.Queue.Embedded; emb != nil {
			if emb.Size != nil {
				size = *emb.Size
			}
			class = emb.StorageClassName
		}
		claimSpec := corev1ac.PersistentVolumeClaimSpec().
			WithAccessModes(corev1.ReadWriteOnce).
			WithResources(corev1ac.VolumeResourceRequirements().WithRequests(corev1.ResourceList{corev1.ResourceStorage: size}))
		if class != nil {
			claimSpec.WithStorageClassName(*class)
		}
		// Built without the constructor, which would set kind and apiVersion
		// inside the template.
		claims = append(claims, (&corev1ac.PersistentVolumeClaimApplyConfiguration{}).
			WithName(dispatcherDataVolume).
			WithLabels(dispatcherLabels(d)).
			WithSpec(claimSpec))
		container.WithVolumeMounts(corev1ac.VolumeMount().WithName(dispatcherDataVolume).WithMountPath(dispatcherDataDir))
	}
	pod.WithContainers(container)

	if len(d.Spec.NodeSelector) > 0 {
		pod.WithNodeSelector(d.Spec.NodeSelector)
	}
	for i := range d.Spec.Tolerations {
		t, err := dispatcherConvert[corev1ac.TolerationApplyConfiguration](&d.Spec.Tolerations[i])
		if err != nil {
			return nil, fmt.Errorf("rendering tolerations: %w", err)
		}
		pod.WithTolerations(t)
	}
	if d.Spec.Affinity != nil {
		a, err := dispatcherConvert[corev1ac.AffinityApplyConfiguration](d.Spec.Affinity)
		if err != nil {
			return nil, fmt.Errorf("rendering affinity: %w", err)
		}
		pod.WithAffinity(a)
	}
	if d.Spec.PriorityClassName != "" {
		pod.WithPriorityClassName(d.Spec.PriorityClassName)
	}
	for _, s := range d.Spec.ImagePullSecrets {
		pod.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(s.Name))
	}

	spec := appsv1ac.StatefulSetSpec().
		WithReplicas(dispatcherReplicas(d)).
		WithServiceName(dispatcherObjectName(d)).
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(dispatcherSelector(d))).
		// Instances are interchangeable (they share an external queue, or
		// there is one): start and stop them together. Immutable, so the
		// same for both queue kinds.
		WithPodManagementPolicy(appsv1.ParallelPodManagement).
		WithPersistentVolumeClaimRetentionPolicy(appsv1ac.StatefulSetPersistentVolumeClaimRetentionPolicy().
			WithWhenDeleted(appsv1.RetainPersistentVolumeClaimRetentionPolicyType).
			WithWhenScaled(appsv1.RetainPersistentVolumeClaimRetentionPolicyType)).
		WithTemplate(corev1ac.PodTemplateSpec().
			WithLabels(dispatcherLabels(d)).
			WithSpec(pod))
	if len(claims) > 0 {
		spec.WithVolumeClaimTemplates(claims...)
	}
	return appsv1ac.StatefulSet(dispatcherObjectName(d), d.Namespace).
		WithLabels(dispatcherLabels(d)).
		WithOwnerReferences(dispatcherOwner(d)).
		WithSpec(spec), nil
}

// dispatcherConvert converts between an API struct and its apply
// configuration through their common JSON form: the parts of the spec the
// user wrote (affinity, tolerations, resources) into apply configurations,
// whose fields are all omitempty so nothing left out is applied; and an
// applied object, as the API server returned it, back into its API type.
func dispatcherConvert[T any](in any) (*T, error) {
	raw, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	out := new(T)
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, err
	}
	return out, nil
}

// dispatcherSecretAccess is what the dispatcher reads in one namespace for the
// subscriptions it serves there.
type dispatcherSecretAccess struct {
	secrets    []string
	configMaps []string
}

// dispatcherSecretAccessFor lists, sorted and without duplicates, the Secrets
// and ConfigMaps that subs (all in one namespace) read: the signing Secret,
// header values, the CA bundle and the client certificate. signingSecret maps
// a WebhookSecret name to its Secret's name.
func dispatcherSecretAccessFor(subs []hooklinev1.WebhookSubscription, signingSecret func(webhookSecret string) string) dispatcherSecretAccess {
	var a dispatcherSecretAccess
	for i := range subs {
		s := &subs[i].Spec
		a.secrets = append(a.secrets, signingSecret(s.Signing.SecretRef.Name))
		for _, r := range rules.References(s) {
			if r.Kind == rules.KindConfigMap {
				a.configMaps = append(a.configMaps, r.Name)
			} else {
				a.secrets = append(a.secrets, r.Name)
			}
		}
	}
	slices.Sort(a.secrets)
	slices.Sort(a.configMaps)
	a.secrets = slices.Compact(a.secrets)
	a.configMaps = slices.Compact(a.configMaps)
	return a
}

// renderDispatcherSecretAccess renders the Role and RoleBinding that let the
// dispatcher read, in namespace, exactly the Secrets and ConfigMaps of
// access. Besides get, the verbs include list and watch: the dispatcher
// follows each object with an informer narrowed by the field selector
// metadata.name, and RBAC checks such a list or watch against resourceNames
// as a request for that one name, never for the others. Outside the
// dispatcher's namespace no owner reference is possible; the labels and the
// finalizer take its place.
func renderDispatcherSecretAccess(d *hooklinev1.WebhookDispatcher, namespace string, access dispatcherSecretAccess) (*rbacv1ac.RoleApplyConfiguration, *rbacv1ac.RoleBindingApplyConfiguration) {
	name := dispatcherSecretRoleName(d)
	role := rbacv1ac.Role(name, namespace).WithLabels(dispatcherLabelsWithRef(d))
	binding := rbacv1ac.RoleBinding(name, namespace).WithLabels(dispatcherLabelsWithRef(d)).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(name)).
		WithSubjects(dispatcherSubject(d))
	if namespace == d.Namespace {
		role.WithOwnerReferences(dispatcherOwner(d))
		binding.WithOwnerReferences(dispatcherOwner(d))
	}
	if len(access.secrets) > 0 {
		role.WithRules(rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("secrets").
			WithResourceNames(access.secrets...).WithVerbs("get", "list", "watch"))
	}
	if len(access.configMaps) > 0 {
		role.WithRules(rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("configmaps").
			WithResourceNames(access.configMaps...).WithVerbs("get", "list", "watch"))
	}
	return role, binding
}
