package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types written by the dispatcher on subscriptions, with its own
// field manager; the controller never writes them.
const (
	// ConditionAccepted is True when a running dispatcher serves the
	// subscription.
	ConditionAccepted = "Accepted"
	// ConditionEndpointHealthy is True while recent delivery attempts
	// succeed.
	ConditionEndpointHealthy = "EndpointHealthy"
	// ConditionSuspended is True while deliveries are held, by the user
	// (spec.suspend) or after sustained failure.
	ConditionSuspended = "Suspended"
	// ConditionEndpointValidated is True once the endpoint accepted the
	// validation handshake that spec.endpointValidation asks for.
	ConditionEndpointValidated = "EndpointValidated"
)

// AnnotationReplay on a subscription asks the dispatcher to replay its
// dead-lettered deliveries: each new value replays once. Any value works; a
// timestamp is a good choice.
const AnnotationReplay = "hookline.dev/replay"

// WebhookSubscriptionSpec declares one endpoint and the events it receives.
type WebhookSubscriptionSpec struct {
	// URL receives the deliveries as HTTP POSTs with JSON bodies. It must
	// be absolute, at most 2048 characters, use https (or http where the
	// dispatcher allows plain HTTP), and carry no user info or fragment:
	// put credentials in headers from a Secret. The host is an ASCII host
	// name (write international names in punycode, xn--...) of labels of
	// letters, digits, '-' and '_', or an IP address in canonical form
	// (192.0.2.1, [2001:db8::1]; no zone, leading zeros, short or
	// IPv4-mapped forms); a port, if any, is from 1 to 65535.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self)",message="must be an absolute URL such as https://example.com/hooks"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() in ['https', 'http']",message="must be an absolute URL with the https or http scheme"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getHostname() != ''",message="must name a host"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@')",message="must not carry user info: put credentials in headers from a Secret"
	// +kubebuilder:validation:XValidation:rule="!self.contains('#')",message="must not carry a fragment"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || self.matches('^[A-Za-z][A-Za-z0-9+.-]*://([[][^]/?#]*[]]|[A-Za-z0-9_-]{1,63}([.][A-Za-z0-9_-]{1,63})*[.]?)(:[0-9]*)?([/?#]|$)') && !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#:[]{254}')",message="host must be an ASCII host name (write international names in punycode, xn--...) or an IP address: labels of letters, digits, '-' and '_', 1 to 63 characters each, 253 in all"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[[]') || isIP(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').indexOf('[') + 1, self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').size() - 1)) && ip.isCanonical(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').indexOf('[') + 1, self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').size() - 1))",message="an IP address host must be written in canonical form, such as 192.0.2.1 or [2001:db8::1], without zone, leading zeros, or IPv4-mapped form"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://([^/?#:[]*[.])?([0-9]+|0[xX][0-9A-Fa-f]*)[.]?(:[0-9]*)?([/?#]|$)') || isIP(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#:]*').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#:]*').indexOf('//') + 2))",message="an IP address host must be written in canonical form, such as 192.0.2.1 or [2001:db8::1], without zone, leading zeros, or IPv4-mapped form"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*:[0-9]+([/?#]|$)') || self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*:[0-9]{1,5}([/?#]|$)') && int(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').lastIndexOf(':') + 1)) >= 1 && int(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').lastIndexOf(':') + 1)) <= 65535",message="port must be a number from 1 to 65535"
	URL string `json:"url"`

	// EventTypes selects events by type. Types are segments joined by
	// ".", for example "order.created"; in a pattern "*" matches one
	// segment and ">" (last only) matches one or more remaining segments,
	// so "order.*" matches "order.created" and "order.>" also matches
	// "order.item.added".
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^(([A-Za-z0-9_-]{1,64}|[*])[.])*([A-Za-z0-9_-]{1,64}|[*]|>)$')",message="must be segments of letters, digits, '_' or '-' (at most 64 each) joined by '.', with '*' for one segment and '>' only as the last"
	EventTypes []string `json:"eventTypes"`

	// Filter is an optional CEL expression over the event that must be
	// true for a delivery, for example `event.data.amount > 100`.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Filter string `json:"filter,omitempty"`

	// DispatcherRef names the WebhookDispatcher that delivers for this
	// subscription. Defaults to the dispatcher named "default" in the
	// operator's namespace. The dispatcher must admit this namespace.
	// +optional
	DispatcherRef *DispatcherReference `json:"dispatcherRef,omitempty"`

	// Signing names the WebhookSecret whose keys sign the deliveries.
	// +required
	Signing SigningSpec `json:"signing"`

	// Headers added to every delivery, with literal values or values from
	// Secret keys in the same namespace (at most 8 of them from Secrets).
	// Headers the signature scheme uses (webhook-*), those the sender sets
	// (content-type, user-agent) and those of the connection and the
	// message framing (connection, content-length, host, keep-alive,
	// proxy-connection, te, trailer, transfer-encoding, upgrade) cannot be
	// set, in any case.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.filter(h, has(h.valueFrom)).size() <= 8",message="at most 8 headers may take their value from a Secret"
	Headers []Header `json:"headers,omitempty"`

	// TLS settings for connections to the URL. Certificates are always
	// verified; there is no way to turn verification off.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`

	// Auth adds credentials to every delivery: HTTP basic auth or an OAuth2
	// bearer token from the client credentials grant.
	// +optional
	Auth *EndpointAuth `json:"auth,omitempty"`

	// EndpointValidation is None (the default) or CloudEvents: before the
	// first delivery the dispatcher sends the CloudEvents webhook validation
	// handshake (OPTIONS with WebHook-Request-Origin) and delivers only once
	// the endpoint allows the origin, at no more than the rate it allows.
	// +optional
	// +kubebuilder:default=None
	EndpointValidation EndpointValidation `json:"endpointValidation,omitempty"`

	// Delivery policy: timeout, retries, concurrency, rate and ordering.
	// +optional
	// +kubebuilder:default={}
	Delivery DeliveryPolicy `json:"delivery,omitempty"`

	// Suspend holds deliveries (they stay queued) until set back to false.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// DispatcherReference names a WebhookDispatcher.
type DispatcherReference struct {
	// Name of the WebhookDispatcher: at most 41 lower-case letters, digits
	// and '-', starting with a letter and ending with a letter or digit.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.size() <= 41 && self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="must be a valid WebhookDispatcher name: at most 41 lower-case letters, digits and '-', starting with a letter and ending with a letter or digit"
	Name string `json:"name"`

	// Namespace of the WebhookDispatcher. Defaults to the subscription's
	// namespace when Name is set. A namespace name: at most 63 lower-case
	// letters, digits and '-', starting and ending with a letter or digit.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a valid namespace name: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
	Namespace string `json:"namespace,omitempty"`
}

// SigningSpec selects the signing keys.
type SigningSpec struct {
	// SecretRef names a WebhookSecret in the subscription's namespace.
	// Where Hookline's admission policy is installed, whoever creates or
	// changes the subscription must be allowed to get it.
	// +required
	SecretRef WebhookSecretReference `json:"secretRef"`
}

// WebhookSecretReference names a WebhookSecret in the same namespace. A
// namespace cannot be given: a subscription never uses secrets from another
// namespace.
// +kubebuilder:validation:XValidation:rule="!has(self.__namespace__)",message="namespace must not be set: a subscription only uses secrets in its own namespace"
type WebhookSecretReference struct {
	// Name of the WebhookSecret: an object name of at most 253 lower-case
	// letters, digits, '-' and '.', starting and ending with a letter or
	// digit.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must be a valid object name: at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name"`

	// Namespace is refused; it exists only so that a cross-namespace
	// reference fails with a clear message instead of being dropped.
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// Header is one HTTP header added to deliveries.
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="set exactly one of value and valueFrom"
// +kubebuilder:validation:XValidation:rule="!self.name.lowerAscii().startsWith('webhook-') && !(self.name.lowerAscii() in ['connection', 'content-length', 'content-type', 'host', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent'])",message="this header is set by Hookline and cannot be overridden"
type Header struct {
	// Name of the header: an HTTP token (letters, digits and
	// !#$%&'*+-.^_`|~), at most 256 characters.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[!#$%&'*+.^_|~0-9A-Za-z-]+$`
	Name string `json:"name"`

	// Value of the header: at most 4096 characters, without control
	// characters (CR, LF, tab, NUL and the other C0 and C1 controls). A
	// value from a Secret must follow the same rule, or the subscription
	// waits until the Secret is fixed.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule=`!self.matches(r'\p{Cc}')`,message="must not contain control characters such as CR, LF, tab or NUL"
	Value *string `json:"value,omitempty"`

	// ValueFrom takes the value from a Secret key in the same namespace.
	// It never appears in logs or status. Where Hookline's admission policy
	// is installed, whoever creates or changes the subscription must be
	// allowed to get the Secret.
	// +optional
	ValueFrom *HeaderValueSource `json:"valueFrom,omitempty"`
}

// HeaderValueSource is where a header value comes from.
type HeaderValueSource struct {
	// SecretKeyRef selects a key of a Secret in the same namespace.
	// +required
	SecretKeyRef SecretKeyReference `json:"secretKeyRef"`
}

// TLSSpec configures server verification and client certificates. Where
// Hookline's admission policy is installed, whoever creates or changes the
// subscription must be allowed to get every Secret and ConfigMap named here.
type TLSSpec struct {
	// CA adds certificate authorities (PEM) for private receivers, on top
	// of the system roots.
	// +optional
	CA *CASource `json:"ca,omitempty"`

	// ClientCertificateSecretRef names a kubernetes.io/tls Secret in the
	// same namespace (keys "tls.crt" and "tls.key") presented for mutual
	// TLS.
	// +optional
	ClientCertificateSecretRef *LocalObjectReference `json:"clientCertificateSecretRef,omitempty"`
}

// EndpointAuth is how deliveries authenticate to the endpoint. Where
// Hookline's admission policy is installed, whoever creates or changes the
// subscription must be allowed to get the Secret named here.
// +kubebuilder:validation:XValidation:rule="has(self.basic) != has(self.oauth2)",message="set exactly one of basic and oauth2"
type EndpointAuth struct {
	// Basic sends HTTP basic auth with the username and password of a
	// Secret in the same namespace (keys "username" and "password").
	// +optional
	Basic *BasicAuth `json:"basic,omitempty"`

	// OAuth2 sends a bearer token obtained with the OAuth2 client
	// credentials grant. Tokens are cached until shortly before they
	// expire, and fetched anew once when the endpoint answers 401.
	// +optional
	OAuth2 *OAuth2ClientCredentials `json:"oauth2,omitempty"`
}

// BasicAuth names the Secret holding basic auth credentials.
type BasicAuth struct {
	// SecretRef names a Secret in the same namespace with the keys
	// "username" and "password".
	// +required
	SecretRef LocalObjectReference `json:"secretRef"`
}

// OAuth2ClientCredentials configures the OAuth2 client credentials grant.
type OAuth2ClientCredentials struct {
	// TokenURL is the authorization server's token endpoint, with the rules
	// of spec.url: absolute, https (or http where the dispatcher allows
	// plain HTTP), an ASCII host name (punycode for international names) or
	// an IP address in canonical form, a port from 1 to 65535 if any, no
	// user info and no fragment. Requests to it pass the same egress policy
	// as deliveries.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self)",message="must be an absolute URL such as https://example.com/hooks"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() in ['https', 'http']",message="must be an absolute URL with the https or http scheme"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getHostname() != ''",message="must name a host"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@')",message="must not carry user info: put the client credentials in clientID and clientSecretRef"
	// +kubebuilder:validation:XValidation:rule="!self.contains('#')",message="must not carry a fragment"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || self.matches('^[A-Za-z][A-Za-z0-9+.-]*://([[][^]/?#]*[]]|[A-Za-z0-9_-]{1,63}([.][A-Za-z0-9_-]{1,63})*[.]?)(:[0-9]*)?([/?#]|$)') && !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#:[]{254}')",message="host must be an ASCII host name (write international names in punycode, xn--...) or an IP address: labels of letters, digits, '-' and '_', 1 to 63 characters each, 253 in all"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[[]') || isIP(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').indexOf('[') + 1, self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').size() - 1)) && ip.isCanonical(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').indexOf('[') + 1, self.find('^[A-Za-z][A-Za-z0-9+.-]*://[[][^]/?#]*[]]').size() - 1))",message="an IP address host must be written in canonical form, such as 192.0.2.1 or [2001:db8::1], without zone, leading zeros, or IPv4-mapped form"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://([^/?#:[]*[.])?([0-9]+|0[xX][0-9A-Fa-f]*)[.]?(:[0-9]*)?([/?#]|$)') || isIP(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#:]*').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#:]*').indexOf('//') + 2))",message="an IP address host must be written in canonical form, such as 192.0.2.1 or [2001:db8::1], without zone, leading zeros, or IPv4-mapped form"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*:[0-9]+([/?#]|$)') || self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*:[0-9]{1,5}([/?#]|$)') && int(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').lastIndexOf(':') + 1)) >= 1 && int(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').substring(self.find('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*').lastIndexOf(':') + 1)) <= 65535",message="port must be a number from 1 to 65535"
	TokenURL string `json:"tokenURL"`

	// ClientID identifies the client to the authorization server.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	ClientID string `json:"clientID"`

	// ClientSecretRef selects the key of a Secret in the same namespace
	// holding the client secret.
	// +required
	ClientSecretRef SecretKeyReference `json:"clientSecretRef"`

	// Scopes requested with the token.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	Scopes []string `json:"scopes,omitempty"`

	// Audience is sent as the "audience" parameter, which some
	// authorization servers require.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Audience string `json:"audience,omitempty"`
}

// EndpointValidation selects the validation handshake.
// +kubebuilder:validation:Enum=None;CloudEvents
type EndpointValidation string

const (
	// EndpointValidationNone delivers without a handshake; the default.
	EndpointValidationNone EndpointValidation = "None"
	// EndpointValidationCloudEvents performs the CloudEvents HTTP webhook
	// validation handshake (abuse protection) before delivering.
	EndpointValidationCloudEvents EndpointValidation = "CloudEvents"
)

// CASource is a PEM bundle in a Secret or a ConfigMap key.
// +kubebuilder:validation:XValidation:rule="has(self.secretKeyRef) != has(self.configMapKeyRef)",message="set exactly one of secretKeyRef and configMapKeyRef"
type CASource struct {
	// SecretKeyRef selects a key of a Secret in the same namespace.
	// +optional
	SecretKeyRef *SecretKeyReference `json:"secretKeyRef,omitempty"`

	// ConfigMapKeyRef selects a key of a ConfigMap in the same namespace.
	// +optional
	ConfigMapKeyRef *SecretKeyReference `json:"configMapKeyRef,omitempty"`
}

// Ordering of deliveries to one subscription.
// +kubebuilder:validation:Enum=Unordered;Ordered
type Ordering string

const (
	// OrderingUnordered delivers concurrently; the default.
	OrderingUnordered Ordering = "Unordered"
	// OrderingOrdered delivers one at a time in ingest order: the next
	// event waits until the previous one succeeded or was dead-lettered.
	OrderingOrdered Ordering = "Ordered"
)

// DeliveryPolicy says how deliveries are attempted.
type DeliveryPolicy struct {
	// Timeout of one attempt, from dialling to the end of the response
	// headers. Between 1s and 5m.
	// +optional
	// +kubebuilder:default="15s"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="must be a duration such as 30s, 5m or 1h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="must be between 1s and 5m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Retry schedule for failed attempts.
	// +optional
	// +kubebuilder:default={}
	Retry RetryPolicy `json:"retry,omitempty"`

	// Concurrency is the most attempts in flight to this subscription at
	// once, so a slow endpoint holds only its own slots. Ordered
	// subscriptions deliver one at a time.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Concurrency int32 `json:"concurrency,omitempty"`

	// RateLimit caps the request rate to the endpoint; excess waits in the
	// queue.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// Ordering is Unordered (the default) or Ordered.
	// +optional
	// +kubebuilder:default=Unordered
	Ordering Ordering `json:"ordering,omitempty"`

	// SuspendAfter suspends the subscription once every attempt has failed
	// for this long (no success in between): deliveries are then held, not
	// dropped, until the spec changes or spec.suspend is set and cleared.
	// EndpointHealthy turns False long before, after a few failures.
	// Between 1m and 720h.
	// +optional
	// +kubebuilder:default="120h"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="must be a duration such as 30s, 5m or 1h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('1m') && duration(self) <= duration('720h')",message="must be between 1m and 720h"
	SuspendAfter *metav1.Duration `json:"suspendAfter,omitempty"`
}

// RetryPolicy is exponential backoff with jitter, bounded by attempts and
// age. The wait doubles from InitialBackoff up to MaxBackoff, each wait
// shortened by up to a fifth at random so retries from many events spread
// out.
// +kubebuilder:validation:XValidation:rule="!has(self.initialBackoff) || !has(self.maxBackoff) || duration(self.initialBackoff) <= duration(self.maxBackoff)",message="initialBackoff must not exceed maxBackoff"
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first included.
	// Between 1 and 100.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxAttempts int32 `json:"maxAttempts,omitempty"`

	// MaxAge is how long after ingest an event may still be attempted;
	// after it the delivery is dead-lettered. Between 1m and 720h.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="must be a duration such as 30s, 5m or 1h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('1m') && duration(self) <= duration('720h')",message="must be between 1m and 720h"
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`

	// InitialBackoff is the wait before the second attempt. Between 100ms
	// and 1h.
	// +optional
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="must be a duration such as 30s, 5m or 1h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('100ms') && duration(self) <= duration('1h')",message="must be between 100ms and 1h"
	InitialBackoff *metav1.Duration `json:"initialBackoff,omitempty"`

	// MaxBackoff caps the wait between attempts. Between 1s and 24h.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="must be a duration such as 30s, 5m or 1h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="must be between 1s and 24h"
	MaxBackoff *metav1.Duration `json:"maxBackoff,omitempty"`
}

// RateLimit is a token bucket.
type RateLimit struct {
	// RequestsPerSecond is the sustained rate. Between 1 and 10000.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	RequestsPerSecond int32 `json:"requestsPerSecond"`

	// Burst is how many requests may go at once above the sustained rate.
	// Defaults to RequestsPerSecond.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	Burst int32 `json:"burst,omitempty"`
}

// DeliveryStatus is the delivery health the dispatcher aggregates.
type DeliveryStatus struct {
	// LastAttemptTime is when the last attempt finished.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`

	// LastSuccessTime is when the last attempt succeeded.
	// +optional
	LastSuccessTime *metav1.Time `json:"lastSuccessTime,omitempty"`

	// LastFailure describes the last failed attempt.
	// +optional
	LastFailure *DeliveryFailure `json:"lastFailure,omitempty"`

	// FailingSince is when the current run of failed attempts began; unset
	// while the last attempt succeeded.
	// +optional
	FailingSince *metav1.Time `json:"failingSince,omitempty"`

	// ConsecutiveFailures counts failed attempts since the last success.
	// +optional
	ConsecutiveFailures int64 `json:"consecutiveFailures,omitempty"`

	// Delivered counts events delivered successfully.
	// +optional
	Delivered int64 `json:"delivered,omitempty"`

	// Failed counts failed attempts.
	// +optional
	Failed int64 `json:"failed,omitempty"`

	// DeadLettered counts every event given up on after its last attempt,
	// replayed since or not: it only grows. Replayable says how many of
	// them are still kept for replay.
	// +optional
	DeadLettered int64 `json:"deadLettered,omitempty"`

	// Replayable is the number of dead-lettered events the dead-letter
	// store keeps for this subscription, which a replay queues again. A
	// replayed event leaves the store (and is counted again if it is
	// dead-lettered again); kept events expire after 14 days.
	// +optional
	Replayable int64 `json:"replayable,omitempty"`

	// Backlog is the number of events waiting for delivery.
	// +optional
	Backlog int64 `json:"backlog,omitempty"`

	// LastReplay is the last replay of dead-lettered deliveries that the
	// hookline.dev/replay annotation asked for.
	// +optional
	LastReplay *ReplayStatus `json:"lastReplay,omitempty"`
}

// ReplayStatus records a replay of dead-lettered deliveries.
type ReplayStatus struct {
	// Request is the value of the hookline.dev/replay annotation that was
	// handled; a new value asks for another replay.
	// +required
	// +kubebuilder:validation:MaxLength=256
	Request string `json:"request"`

	// Time the replay was made.
	// +required
	Time metav1.Time `json:"time"`

	// Replayed is how many dead-lettered deliveries were queued again.
	// +optional
	Replayed int64 `json:"replayed,omitempty"`
}

// DeliveryFailure describes one failed attempt.
type DeliveryFailure struct {
	// Time of the attempt.
	// +required
	Time metav1.Time `json:"time"`

	// StatusCode the endpoint answered, if it answered.
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`

	// Class of the error: HTTPStatus, Timeout, ConnectionError, TLSError,
	// EgressDenied, Redirect, AuthError, InvalidRequest.
	// +optional
	Class string `json:"class,omitempty"`

	// Message is a short description without secret material.
	// +optional
	Message string `json:"message,omitempty"`
}

// WebhookSubscriptionStatus is the observed state of a WebhookSubscription.
type WebhookSubscriptionStatus struct {
	// ObservedGeneration is the generation the controller's conditions
	// describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling and Stalled from the controller;
	// Accepted, EndpointHealthy and Suspended from the dispatcher.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Dispatcher is the resolved WebhookDispatcher, "namespace/name".
	// +optional
	Dispatcher string `json:"dispatcher,omitempty"`

	// EventTypes is spec.eventTypes as written, joined with ", ", for the
	// EVENT TYPES column of kubectl get (a column shows a list as JSON).
	// +optional
	EventTypes string `json:"eventTypes,omitempty"`

	// Delivery health, written by the dispatcher.
	// +optional
	Delivery *DeliveryStatus `json:"delivery,omitempty"`
}

// WebhookSubscription is one endpoint that receives signed deliveries of
// the events it selects.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whsub;whsubscription,categories=hookline
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Event Types",type=string,JSONPath=`.status.eventTypes`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Healthy",type=string,JSONPath=`.status.conditions[?(@.type=="EndpointHealthy")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Dispatcher",type=string,JSONPath=`.status.dispatcher`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WebhookSubscription struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec WebhookSubscriptionSpec `json:"spec"`
	// +optional
	Status WebhookSubscriptionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// WebhookSubscriptionList is a list of WebhookSubscriptions.
type WebhookSubscriptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebhookSubscription `json:"items"`
}

func init() {
	register(&WebhookSubscription{}, &WebhookSubscriptionList{})
}

// GetConditions returns the status conditions.
func (in *WebhookSubscription) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the status conditions.
func (in *WebhookSubscription) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }
