package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebhookDispatcherSpec declares a pool of dispatcher instances.
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas <= 1 || has(self.queue) && has(self.queue.external)",message="the embedded queue serves one replica: set replicas to 1 or use queue.external",fieldPath=".replicas"
type WebhookDispatcherSpec struct {
	// Replicas is the number of dispatcher instances, from 0 to 100. The
	// embedded queue serves one; more need queue.external.
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

	// Resources of the dispatcher container. Requests and limits of cpu,
	// memory and ephemeral-storage, where set, must be positive quantities.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.requests) || (!('cpu' in self.requests) || (type(self.requests['cpu']) == string ? quantity(self.requests['cpu']).isGreaterThan(quantity('0')) : self.requests['cpu'] > 0)) && (!('memory' in self.requests) || (type(self.requests['memory']) == string ? quantity(self.requests['memory']).isGreaterThan(quantity('0')) : self.requests['memory'] > 0)) && (!('ephemeral-storage' in self.requests) || (type(self.requests['ephemeral-storage']) == string ? quantity(self.requests['ephemeral-storage']).isGreaterThan(quantity('0')) : self.requests['ephemeral-storage'] > 0))",message="cpu, memory and ephemeral-storage requests must be positive quantities",fieldPath=".requests"
	// +kubebuilder:validation:XValidation:rule="!has(self.limits) || (!('cpu' in self.limits) || (type(self.limits['cpu']) == string ? quantity(self.limits['cpu']).isGreaterThan(quantity('0')) : self.limits['cpu'] > 0)) && (!('memory' in self.limits) || (type(self.limits['memory']) == string ? quantity(self.limits['memory']).isGreaterThan(quantity('0')) : self.limits['memory'] > 0)) && (!('ephemeral-storage' in self.limits) || (type(self.limits['ephemeral-storage']) == string ? quantity(self.limits['ephemeral-storage']).isGreaterThan(quantity('0')) : self.limits['ephemeral-storage'] > 0))",message="cpu, memory and ephemeral-storage limits must be positive quantities",fieldPath=".limits"
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
	// Size of the volume claim, a positive quantity such as 10Gi. Defaults
	// to 1Gi.
	// +optional
	// +kubebuilder:validation:XValidation:rule="type(self) == string ? quantity(self).isGreaterThan(quantity('0')) : self > 0",message="must be a positive quantity such as 1Gi"
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
	// are denied by default, for example in-cluster receivers. A CIDR in
	// IPv4-mapped IPv6 form ("::ffff:10.0.0.0/104", at least /96) means the
	// IPv4 range it maps ("10.0.0.0/8").
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c) || c.matches('^::[fF]{4}:[0-9]{1,3}([.][0-9]{1,3}){3}/[0-9]{1,3}$') && isIP(c.substring(7).split('/')[0]) && int(c.split('/')[1]) >= 96 && int(c.split('/')[1]) <= 128)",message="every entry must be a CIDR such as 10.0.0.0/8, fd00::/8 or ::ffff:10.0.0.0/104"
	AllowedCIDRs []string `json:"allowedCIDRs,omitempty"`

	// DeniedCIDRs are further address ranges deliveries must never reach.
	// They win over AllowedCIDRs. IPv4-mapped IPv6 CIDRs mean the IPv4
	// range they map, as in AllowedCIDRs.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c) || c.matches('^::[fF]{4}:[0-9]{1,3}([.][0-9]{1,3}){3}/[0-9]{1,3}$') && isIP(c.substring(7).split('/')[0]) && int(c.split('/')[1]) >= 96 && int(c.split('/')[1]) <= 128)",message="every entry must be a CIDR such as 203.0.113.0/24"
	DeniedCIDRs []string `json:"deniedCIDRs,omitempty"`

	// AllowPlainHTTP permits http:// subscription URLs. Off by default:
	// deliveries use HTTPS.
	// +optional
	AllowPlainHTTP bool `json:"allowPlainHTTP,omitempty"`

	// ProxyURL sends deliveries through an HTTP(S) proxy. It has the rules
	// of a subscription's spec.url: absolute, http or https, an ASCII host
	// name (punycode for international names) or an IP address in
	// canonical form, a port from 1 to 65535 if any, no user info and no
	// fragment.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self)",message="must be an absolute URL such as https://example.com/hooks"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() in ['https', 'http']",message="must be an absolute URL with the https or http scheme"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getHostname() != ''",message="must name a host"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@')",message="must not carry user info: proxy credentials are not supported"
	// +kubebuilder:validation:XValidation:rule="!self.contains('#')",message="must not carry a fragment"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || self.matches('^[A-Za-z][A-Za-z0-9+.-]*://([[][^]/?#]*[]]|[A-Za-z0-9_-]{1,63}([.][A-Za-z0-9_-]{1,63})*[.]?)(:[0-9]*)?([/?#]|$)') && !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#:[]{254}')",message="host must be an ASCII host name (write international names in punycode, xn--...) or an IP address: labels of letters, digits, '-' and '_', 1 to 63 characters each, 253 in all"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[[]') || isIP(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').indexOf('[') + 1, self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').size() - 1)) && ip.isCanonical(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').indexOf('[') + 1, self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').size() - 1))",message="an IP address host must be written in canonical form, such as 192.0.2.1 or [2001:db8::1], without zone, leading zeros, or IPv4-mapped form"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://([^/?#:[]*[.])?([0-9]+|0[xX][0-9A-Fa-f]*)[.]?(:[0-9]*)?([/?#]|$)') || isIP(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#:]*').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#:]*').indexOf('//') + 2))",message="an IP address host must be written in canonical form, such as 192.0.2.1 or [2001:db8::1], without zone, leading zeros, or IPv4-mapped form"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*:[0-9]+([/?#]|$)') || self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*:[0-9]{1,5}([/?#]|$)') && int(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').lastIndexOf(':') + 1)) >= 1 && int(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').lastIndexOf(':') + 1)) <= 65535",message="port must be a number from 1 to 65535"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="must be an absolute http:// or https:// URL"
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
