// Package v1alpha1 holds the Hookline API: WebhookDispatcher, WebhookSecret and
// WebhookSubscription in the API group hookline.dev.
//
// +kubebuilder:object:generate=true
// +groupName=hookline.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of every Hookline kind.
	GroupVersion = schema.GroupVersion{Group: "hookline.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Hookline kinds with a runtime.Scheme.
	// It is apimachinery's, not controller-runtime's, so the dispatcher
	// can use these types without the controller libraries.
	SchemeBuilder = runtime.NewSchemeBuilder(func(s *runtime.Scheme) error {
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	})

	// AddToScheme adds the Hookline kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// register adds kinds to SchemeBuilder; each kind's file calls it.
func register(objs ...runtime.Object) {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, objs...)
		return nil
	})
}
