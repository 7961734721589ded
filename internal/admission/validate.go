// Package admission is the manager's validating admission webhook: it
// refuses, at admission, the WebhookSubscriptions the CRD's schema cannot
// judge (a CEL filter that does not compile or type-check), with the same
// rules the controller and the dispatcher apply (internal/rules), and keeps
// the webhook's serving certificate (certs.go).
package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/rules"
)

// SubscriptionPath is where the webhook serves WebhookSubscription reviews;
// the ValidatingWebhookConfiguration calls it.
const SubscriptionPath = "/validate-hookline-dev-v1alpha1-webhooksubscription"

// SubscriptionValidator checks created and changed WebhookSubscriptions
// with every rule of internal/rules that needs no other object, the filter
// included. A refusal is a 422 Invalid that lists each field's full path
// and its rule, as the API server's own validation does.
type SubscriptionValidator struct{}

var _ admission.Handler = SubscriptionValidator{}

// Handle answers one admission review.
func (SubscriptionValidator) Handle(_ context.Context, req admission.Request) admission.Response {
	sub := &hooklinev1.WebhookSubscription{}
	if err := json.Unmarshal(req.Object.Raw, sub); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the WebhookSubscription: %w", err))
	}
	errs := ValidateSubscription(sub)
	if len(errs) == 0 {
		return admission.Allowed("")
	}
	status := apierrors.NewInvalid(hooklinev1.GroupVersion.WithKind("WebhookSubscription").GroupKind(), req.Name, errs).Status()
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &status}}
}

// ValidateSubscription returns every rule sub breaks that the webhook
// checks.
func ValidateSubscription(sub *hooklinev1.WebhookSubscription) field.ErrorList {
	errs := rules.ValidateSpec(&sub.Spec)
	if sub.Spec.Filter != "" {
		if _, err := rules.ValidateFilter(sub.Spec.Filter); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Register serves the subscription webhook on server.
func Register(server webhook.Server) {
	server.Register(SubscriptionPath, &webhook.Admission{Handler: SubscriptionValidator{}})
}
