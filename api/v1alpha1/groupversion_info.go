// Package v1alpha1 holds the Hookline API: WebhookDispatcher, WebhookSecret and
// WebhookSubscription in the API group hookline.dev.
//
// +kubebuilder:object:generate=true
// +groupName=hookline.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of every Hookline kind.
	GroupVersion = schema.GroupVersion{Group: "hookline.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Hookline kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Hookline kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
