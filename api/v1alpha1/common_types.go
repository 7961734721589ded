package v1alpha1

// Condition types. Ready summarises; Reconciling and Stalled follow the
// kstatus conventions so kubectl, Flux and Argo CD compute health without
// knowing these kinds.
const (
	// ConditionReady is True when the object does what its spec asks.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the controller is still working
	// towards the spec, or waits for something that may still appear.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the spec cannot work until someone
	// changes it; the controller does not retry on its own.
	ConditionStalled = "Stalled"
)

// Condition reasons shared by all kinds.
const (
	// ReasonSucceeded means the last reconciliation achieved the spec.
	ReasonSucceeded = "Succeeded"
	// ReasonProgressing means the controller is working towards the spec.
	ReasonProgressing = "Progressing"
	// ReasonReconcileError means a transient error interrupted the
	// reconciliation; it is retried with backoff.
	ReasonReconcileError = "ReconcileError"
	// ReasonInvalidSpec means the spec breaks a rule that admission could
	// not check (for example on an older API server); it must be edited.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonObjectConflict means an object the controller would write
	// exists and is not controlled by this resource; it is left untouched.
	ReasonObjectConflict = "ObjectConflict"
)

// WebhookSecret reasons.
const (
	// ReasonKeyRotated means a new signing key was generated; the previous
	// key keeps signing until the overlap window ends.
	ReasonKeyRotated = "KeyRotated"
	// ReasonKeyCreated means the first signing key was generated.
	ReasonKeyCreated = "KeyCreated"
	// ReasonSecretConflict means a Secret with the target name exists and
	// is not owned by this WebhookSecret; it is never overwritten.
	ReasonSecretConflict = "SecretConflict"
	// ReasonKeyExpired means a previous key reached the end of its overlap
	// window and was removed from the Secret.
	ReasonKeyExpired = "KeyExpired"
)

// WebhookSubscription reasons.
const (
	// ReasonSecretNotFound means the referenced WebhookSecret does not exist
	// yet; the subscription waits for it.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretNotReady means the referenced WebhookSecret exists but has
	// no usable signing key yet.
	ReasonSecretNotReady = "SecretNotReady"
	// ReasonDispatcherNotFound means the referenced WebhookDispatcher does
	// not exist yet; the subscription waits for it.
	ReasonDispatcherNotFound = "DispatcherNotFound"
	// ReasonDispatcherNotReady means the referenced WebhookDispatcher exists
	// but is not Ready.
	ReasonDispatcherNotReady = "DispatcherNotReady"
	// ReasonNamespaceNotAllowed means the referenced WebhookDispatcher does
	// not admit subscriptions from this namespace.
	ReasonNamespaceNotAllowed = "NamespaceNotAllowed"
	// ReasonURLNotAllowed means the dispatcher's egress policy refuses the
	// URL (for example plain http when the dispatcher does not allow it).
	ReasonURLNotAllowed = "URLNotAllowed"
	// ReasonSuspended means the dispatcher holds the subscription's
	// deliveries (by spec.suspend, or after sustained failure); they stay
	// queued. The Suspended condition says why.
	ReasonSuspended = "Suspended"
	// ReasonEndpointUnhealthy means the spec is reconciled but deliveries
	// to the endpoint fail; the EndpointHealthy condition has the details.
	// Nothing needs to change in the spec: deliveries are retried.
	ReasonEndpointUnhealthy = "EndpointUnhealthy"
	// ReasonReferenceNotFound means a Secret or ConfigMap named by
	// spec.headers or spec.tls does not exist yet, or lacks the key the
	// spec names; the subscription waits for it. The message names the
	// object, the field and the missing key, never the keys the object has.
	ReasonReferenceNotFound = "ReferenceNotFound"
	// ReasonAwaitingDispatcher means the subscription's spec and references
	// check out, but the dispatcher has not yet reported it Accepted for its
	// current generation. Until it has, the dispatcher may not have created
	// the subscription's queue consumer, and events published meanwhile
	// are not kept for it.
	ReasonAwaitingDispatcher = "AwaitingDispatcher"
)

// WebhookDispatcher reasons.
const (
	// ReasonReplicasUnavailable means fewer dispatcher instances are
	// available than the spec asks for.
	ReasonReplicasUnavailable = "ReplicasUnavailable"
	// ReasonApplyFailed means rendering or applying an owned object failed.
	ReasonApplyFailed = "ApplyFailed"
)

// Labels of the Lease each running dispatcher instance keeps renewed in its
// WebhookDispatcher's namespace, named "<dispatcher>-instance-<instance>".
// The controller counts the live ones (renewTime plus leaseDurationSeconds
// still ahead) as the dispatcher's ready instances, whether they run in a
// pod or not. An instance deletes its Lease when it stops; after a crash the
// Lease expires.
const (
	// LabelDispatcher names the WebhookDispatcher the Lease belongs to.
	LabelDispatcher = "hookline.dev/dispatcher"
	// LabelLeaseRole says what the Lease is for; instance Leases carry
	// LeaseRoleInstance.
	LabelLeaseRole = "hookline.dev/lease-role"
	// LeaseRoleInstance marks a Lease that announces one running instance.
	LeaseRoleInstance = "instance"
	// AnnotationIngestURL, on an instance Lease, is the URL at which that
	// instance's ingest API is reachable from outside the cluster network,
	// when it is run with --advertise-ingest-url (a dispatcher run as a
	// local process, as the playground does). kubectl hookline uses it when
	// the dispatcher has no Ready pod to port-forward to.
	AnnotationIngestURL = "hookline.dev/ingest-url"
)

// Annotations understood by the controllers.
const (
	// RotateAnnotation requests a manual key rotation on a WebhookSecret:
	// each new value triggers exactly one rotation. Any value works; a
	// timestamp is customary (kubectl annotate --overwrite
	// webhooksecret/NAME hookline.dev/rotate="$(date +%s)").
	RotateAnnotation = "hookline.dev/rotate"
)

// Keys of the Secret a WebhookSecret owns. The layout is part of the API:
// receivers in the cluster mount the same Secret to verify deliveries.
const (
	// SecretKeySigningKey holds the current key: "whsec_..." (HMAC-SHA256)
	// or "whsk_..." (Ed25519 private key).
	SecretKeySigningKey = "signing-key"
	// SecretKeyPreviousSigningKey holds the previous key during the overlap
	// window after a rotation, and is absent otherwise.
	SecretKeyPreviousSigningKey = "signing-key.previous"
	// SecretKeyPublicKey holds the current Ed25519 public key "whpk_...".
	SecretKeyPublicKey = "public-key"
	// SecretKeyPreviousPublicKey holds the previous Ed25519 public key
	// during the overlap window.
	SecretKeyPreviousPublicKey = "public-key.previous"
)

// SigningKeySecretType is the type of the Secret a WebhookSecret owns.
const SigningKeySecretType = "hookline.dev/signing-key"

// Annotations on the Secret a WebhookSecret owns: what the keys alone do not
// say. Times are RFC 3339.
const (
	// AnnotationSigningKeyCreatedAt is when the current key was generated.
	AnnotationSigningKeyCreatedAt = "hookline.dev/signing-key-created-at"
	// AnnotationPreviousKeyCreatedAt is when the previous key was generated.
	AnnotationPreviousKeyCreatedAt = "hookline.dev/previous-key-created-at"
	// AnnotationPreviousKeyExpiresAt is when the previous key stops
	// signing; signers must not use it after this time even if the
	// controller has not removed it yet.
	AnnotationPreviousKeyExpiresAt = "hookline.dev/previous-key-expires-at"
	// AnnotationLastRotateRequest is the last value of RotateAnnotation that
	// caused a rotation.
	AnnotationLastRotateRequest = "hookline.dev/last-rotate-request"
)

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the referenced object: an object name of at most 253
	// lower-case letters, digits, '-' and '.', starting and ending with a
	// letter or digit.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must be a valid object name: at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name"`
}

// SecretKeyReference selects one key of a Secret in the same namespace.
type SecretKeyReference struct {
	// Name of the Secret (or ConfigMap), in the same namespace as the
	// referring object: an object name of at most 253 lower-case letters,
	// digits, '-' and '.', starting and ending with a letter or digit.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must be a valid object name: at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name"`

	// Key within the Secret's data: letters, digits, '-', '_' and '.'.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}
