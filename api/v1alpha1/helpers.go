package v1alpha1

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// AdmitsNamespace says whether the dispatcher admits subscriptions from the
// namespace named ns, whose labels are nsLabels. The controller and the
// dispatcher both decide with it, so they never disagree.
func (d *WebhookDispatcher) AdmitsNamespace(ns string, nsLabels map[string]string) (bool, error) {
	switch d.Spec.AllowedNamespaces.From {
	case NamespacesFromAll:
		return true, nil
	case NamespacesFromSelector:
		if d.Spec.AllowedNamespaces.Selector == nil {
			return false, fmt.Errorf("allowedNamespaces.from is Selector but no selector is set")
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.AllowedNamespaces.Selector)
		if err != nil {
			return false, fmt.Errorf("parsing allowedNamespaces.selector: %w", err)
		}
		return sel.Matches(labels.Set(nsLabels)), nil
	default: // Same, and unset on objects admitted before defaulting.
		return ns == d.Namespace, nil
	}
}

// SigningSecretName is the Secret a WebhookSecret writes its keys to:
// spec.secretName, defaulting to the WebhookSecret's name.
func (s *WebhookSecret) SigningSecretName() string {
	if s.Spec.SecretName != "" {
		return s.Spec.SecretName
	}
	return s.Name
}
