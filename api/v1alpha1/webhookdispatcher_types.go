package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebhookDispatcherSpec declares a pool of dispatcher instances.
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas <= 1 || has(self.queue) && has(self.queue.external)",message="the embedded queue serves one replica: set replicas to 1 or use queue.external"
type WebhookDispatcherSpec struct {
	// Replicas is the number of dispatcher instances. The embedded queue
	// serves one; more need queue.external.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Replicas *int32 `json:"replicas,omitempty"`

	// Image overrides the dispatcher image. Defaults to the image the
	// operator was installed with.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Image string `json:"image,omitempty"`

	// ImagePullSecrets for the dispatcher pods.
	// +optional
	// +listType=atomic
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// Resources of the dispatcher container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// NodeSelector pins dispatcher pods to nodes, for example those with
	// known egress addresses that receivers allow-list.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the dispatcher pods.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity of the dispatcher pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// PriorityClassName of the dispatcher pods.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// Queue is where accepted events are stored until delivered.
	// +optional
	Queue QueueSpec `json:"queue,omitempty"`

	// Egress is the policy every outgoing delivery connection is checked
	// against.
	// +optional
	Egress EgressPolicy `json:"egress,omitempty"`

	// AllowedNamespaces says which namespaces may attach subscriptions.
	// +optional
	AllowedNamespaces AllowedNamespaces `json:"allowedNamespaces,omitempty"`

	// ProducerAuthentication is how event producers authenticate to the
	// ingest API. ServiceAccountToken (the default) checks a bearer
	// ServiceAccount token with audience "hookline" by TokenReview and
	// authorises it with a SubjectAccessReview for create on webhookevents.
	// None accepts anonymous producers and is meant for local development.
	// +optional
	// +kubebuilder:default=ServiceAccountToken
	ProducerAuthentication ProducerAuthenticationMode `json:"producerAuthentication,omitempty"`
}

// ProducerAuthenticationMode selects how producers authenticate.
// +kubebuilder:validation:Enum=ServiceAccountToken;None
type ProducerAuthenticationMode string

const (
	// ProducerAuthServiceAccountToken checks ServiceAccount tokens.
	ProducerAuthServiceAccountToken ProducerAuthenticationMode = "ServiceAccountToken"
	// ProducerAuthNone accepts every producer.
	ProducerAuthNone ProducerAuthenticationMode = "None"
)

// QueueSpec selects the queue backend: the embedded NATS JetStream server
// (the default) or an external JetStream cluster. The backend cannot change
// once the dispatcher exists: the embedded queue lives on the StatefulSet's
// volume claims, which are immutable.
// +kubebuilder:validation:XValidation:rule="!(has(self.embedded) && has(self.external))",message="set at most one of embedded and external"
// +kubebuilder:validation:XValidation:rule="has(self.external) == has(oldSelf.external)",message="the queue backend cannot change between embedded and external once created: StatefulSet volume claims are immutable; create a new dispatcher to move"
type QueueSpec struct {
	// Embedded runs a JetStream server inside each dispatcher pod, storing
	// on a persistent volume with fsync on every write.
	// +optional
	Embedded *EmbeddedQueue `json:"embedded,omitempty"`

	// External uses an existing NATS JetStream cluster, shared by all
	// replicas.
	// +optional
	External *ExternalQueue `json:"external,omitempty"`
}

// EmbeddedQueue configures the dispatcher's own storage. It cannot change
// once set: it becomes the StatefulSet's volume claim template.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="the embedded queue's volume cannot change once created: StatefulSet volume claims are immutable; create a new dispatcher to move"
type EmbeddedQueue struct {
	// Size of the volume claim. Defaults to 1Gi.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`

	// StorageClassName of the volume claim. Defaults to the cluster's
	// default storage class.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// ExternalQueue points at a NATS JetStream cluster.
type ExternalQueue struct {
	// URL of the NATS servers, comma separated, for example
	// "nats://nats-0.nats:4222,nats://nats-1.nats:4222".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^(nats|tls)://[^, /]+(, ?(nats|tls)://[^, /]+)*$')",message="must be a comma-separated list of nats:// or tls:// URLs"
	URL string `json:"url"`

	// CredentialsSecretRef names a Secret in the dispatcher's namespace
	// whose key "nats.creds" holds a NATS credentials file (JWT and seed).
	// +optional
	CredentialsSecretRef *LocalObjectReference `json:"credentialsSecretRef,omitempty"`

	// StreamReplicas is the number of copies JetStream keeps of each
	// stream. Defaults to 3.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5
	StreamReplicas int32 `json:"streamReplicas,omitempty"`
}

// EgressPolicy restricts where deliveries may connect. Loopback,
// link-local (cloud metadata), private, CGNAT and unique-local addresses are
// denied unless allowed here.
type EgressPolicy struct {
	// AllowedCIDRs are address ranges deliveries may reach even though they
	// are denied by default, for example in-cluster receivers.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c))",message="every entry must be a CIDR such as 10.0.0.0/8 or fd00::/8"
	AllowedCIDRs []string `json:"allowedCIDRs,omitempty"`

	// DeniedCIDRs are further address ranges deliveries must never reach.
	// They win over AllowedCIDRs.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c))",message="every entry must be a CIDR such as 203.0.113.0/24"
	DeniedCIDRs []string `json:"deniedCIDRs,omitempty"`

	// AllowPlainHTTP permits http:// subscription URLs. Off by default:
	// deliveries use HTTPS.
	// +optional
	AllowPlainHTTP bool `json:"allowPlainHTTP,omitempty"`

	// ProxyURL sends deliveries through an HTTP(S) proxy.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="must be an absolute http:// or https:// URL"
	ProxyURL string `json:"proxyURL,omitempty"`
}

// NamespacesFrom selects which namespaces may attach subscriptions.
// +kubebuilder:validation:Enum=Same;All;Selector
type NamespacesFrom string

const (
	// NamespacesFromSame admits only the dispatcher's own namespace.
	NamespacesFromSame NamespacesFrom = "Same"
	// NamespacesFromAll admits every namespace.
	NamespacesFromAll NamespacesFrom = "All"
	// NamespacesFromSelector admits namespaces whose labels match Selector.
	NamespacesFromSelector NamespacesFrom = "Selector"
)

// AllowedNamespaces admits subscriptions by namespace, as Gateway API's
// allowedRoutes does.
// +kubebuilder:validation:XValidation:rule="self.from == 'Selector' ? has(self.selector) : !has(self.selector)",message="selector must be set when, and only when, from is Selector"
type AllowedNamespaces struct {
	// From is Same (the default), All or Selector.
	// +optional
	// +kubebuilder:default=Same
	From NamespacesFrom `json:"from,omitempty"`

	// Selector of namespace labels, with From: Selector.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// WebhookDispatcherStatus is the observed state of a WebhookDispatcher.
type WebhookDispatcherStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Address is the in-cluster URL of the ingest API, for example
	// "http://default-dispatcher.hookline-system.svc:8080".
	// +optional
	Address string `json:"address,omitempty"`

	// Replicas is the number of dispatcher instances that exist.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// ReadyReplicas is the number of dispatcher instances that are ready.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// ServiceAccountName is the identity the dispatcher runs as.
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// Selector is the label selector of the dispatcher's pods, in the
	// string form the scale subresource reports to kubectl scale and the
	// HorizontalPodAutoscaler.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Selector string `json:"selector,omitempty"`
}

// WebhookDispatcher is a pool of dispatcher instances that ingest events,
// store them durably and deliver them to the subscriptions attached to it.
//
// +kubebuilder:object:root=true
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 41",message="metadata.name must be at most 41 characters: the dispatcher's pods are named after it"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must start with a letter and hold only lower-case letters, digits and '-': the dispatcher's Service is named after it"
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=whd;whdispatcher,categories=hookline
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.address`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Ready Replicas",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WebhookDispatcher struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec WebhookDispatcherSpec `json:"spec,omitempty"`
	// +optional
	Status WebhookDispatcherStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// WebhookDispatcherList is a list of WebhookDispatchers.
type WebhookDispatcherList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebhookDispatcher `json:"items"`
}

func init() {
	register(&WebhookDispatcher{}, &WebhookDispatcherList{})
}

// GetConditions returns the status conditions.
func (in *WebhookDispatcher) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the status conditions.
func (in *WebhookDispatcher) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }
