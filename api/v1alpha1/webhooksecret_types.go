package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SigningAlgorithm is how deliveries are signed, per the Standard Webhooks
// specification.
// +kubebuilder:validation:Enum=HMAC-SHA256;Ed25519
type SigningAlgorithm string

const (
	// AlgorithmHMACSHA256 signs with a shared secret ("v1," signatures).
	AlgorithmHMACSHA256 SigningAlgorithm = "HMAC-SHA256"
	// AlgorithmEd25519 signs with a private key; receivers verify with the
	// public key ("v1a," signatures).
	AlgorithmEd25519 SigningAlgorithm = "Ed25519"
)

// WebhookSecretSpec declares signing material that Hookline generates,
// stores in a Secret and rotates.
// +kubebuilder:validation:XValidation:rule="has(self.secretName) == has(oldSelf.secretName) && (!has(self.secretName) || self.secretName == oldSelf.secretName)",message="secretName is immutable once set"
type WebhookSecretSpec struct {
	// Algorithm of the signing key. Changing it rotates to a key of the new
	// algorithm; the previous key keeps signing during the overlap window.
	// +optional
	// +kubebuilder:default=HMAC-SHA256
	Algorithm SigningAlgorithm `json:"algorithm,omitempty"`

	// SecretName is the name of the Secret, in the same namespace, that the
	// controller creates and owns to hold the keys. Defaults to the
	// WebhookSecret's name. Immutable. An existing Secret of that name that
	// this WebhookSecret does not own is never overwritten.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SecretName string `json:"secretName,omitempty"`

	// Rotation configures automatic key rotation. Without it, keys rotate
	// only on request (the hookline.dev/rotate annotation).
	// +optional
	Rotation *RotationPolicy `json:"rotation,omitempty"`
}

// RotationPolicy says when keys rotate and how long the previous key stays.
// +kubebuilder:validation:XValidation:rule="!has(self.interval) || !has(self.overlap) || !self.interval.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || !self.overlap.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self.overlap) < duration(self.interval)",message="overlap must be shorter than interval: otherwise more than two keys would have to sign at once (the overlap defaults to 24h; set it below the interval)",fieldPath=".overlap"
type RotationPolicy struct {
	// Interval between automatic rotations, for example "720h". At least
	// 1h and at most 8760h (one year). Unset: rotate only on request.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="must be a duration such as 30s, 5m or 1h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('1h') && duration(self) <= duration('8760h')",message="must be between 1h and 8760h"
	Interval *metav1.Duration `json:"interval,omitempty"`

	// Overlap is how long the previous key keeps signing after a rotation,
	// so receivers can move to the new key without losing a delivery.
	// Zero removes the previous key at once. At most 720h, and shorter than
	// Interval when Interval is set.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="must be a duration such as 30s, 5m or 1h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('0s') && duration(self) <= duration('720h')",message="must be between 0s and 720h"
	Overlap *metav1.Duration `json:"overlap,omitempty"`
}

// KeyStatus describes one key held in the Secret. It never carries key
// material.
type KeyStatus struct {
	// ID is the key's fingerprint ("k-" and 16 hex digits of a SHA-256 over
	// the secret, or over the public key for Ed25519).
	// +required
	ID string `json:"id"`

	// Algorithm of the key.
	// +required
	Algorithm SigningAlgorithm `json:"algorithm"`

	// Current is true for the key that signs from now on; false for the
	// previous key during its overlap window.
	// +optional
	Current bool `json:"current,omitempty"`

	// CreatedAt is when the key was generated.
	// +required
	CreatedAt metav1.Time `json:"createdAt"`

	// ExpiresAt is when the key stops signing and leaves the Secret. Unset
	// for the current key.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// PublicKey is the Ed25519 public key ("whpk_..."), for receivers
	// outside the cluster. Empty for HMAC keys.
	// +optional
	PublicKey string `json:"publicKey,omitempty"`
}

// WebhookSecretStatus is the observed state of a WebhookSecret.
type WebhookSecretStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// SecretName is the Secret that holds the keys.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// Keys held in the Secret, current first.
	// +optional
	// +listType=atomic
	Keys []KeyStatus `json:"keys,omitempty"`

	// CurrentKeyID is the fingerprint of the key that signs now.
	// +optional
	CurrentKeyID string `json:"currentKeyID,omitempty"`

	// PublicKey is the current Ed25519 public key ("whpk_..."). Empty for
	// HMAC-SHA256.
	// +optional
	PublicKey string `json:"publicKey,omitempty"`

	// LastRotationTime is when the current key was generated.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`

	// NextRotationTime is when the next automatic rotation is due. Unset
	// without a rotation interval.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`

	// LastHandledRotateRequest is the last value of the hookline.dev/rotate
	// annotation that caused a rotation.
	// +optional
	LastHandledRotateRequest string `json:"lastHandledRotateRequest,omitempty"`
}

// WebhookSecret is signing material for webhook deliveries. The controller
// generates keys into a Secret it owns, rotates them, and publishes key ids
// (never keys) in status.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whsec;whsecret,categories=hookline
// +kubebuilder:printcolumn:name="Algorithm",type=string,JSONPath=`.spec.algorithm`
// +kubebuilder:printcolumn:name="Key",type=string,JSONPath=`.status.currentKeyID`
// +kubebuilder:printcolumn:name="Next Rotation",type=date,JSONPath=`.status.nextRotationTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WebhookSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec WebhookSecretSpec `json:"spec,omitempty"`
	// +optional
	Status WebhookSecretStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// WebhookSecretList is a list of WebhookSecrets.
type WebhookSecretList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebhookSecret `json:"items"`
}

func init() {
	register(&WebhookSecret{}, &WebhookSecretList{})
}

// GetConditions returns the status conditions.
func (in *WebhookSecret) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the status conditions.
func (in *WebhookSecret) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }
