package admission

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func TestSubscriptionValidator(t *testing.T) {
	valid := hooklinev1.WebhookSubscriptionSpec{
		URL:        "https://example.com/hooks",
		EventTypes: []string{"order.created"},
		Signing:    hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "s"}},
	}
	for _, tt := range []struct {
		name   string
		mutate func(*hooklinev1.WebhookSubscriptionSpec)
		// want are the field paths the refusal names, in order; none
		// means allowed.
		want []string
	}{
		{"valid with a filter", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Filter = `event.data.amount > 100` }, nil},
		{"filter with a syntax error", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Filter = `event.type ==` }, []string{"spec.filter"}},
		{"filter that is not boolean", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Filter = `event.type` }, []string{"spec.filter"}},
		{"every error at once", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.URL = "https://example.com:0/hooks"
			s.Filter = `request.size > 1`
		}, []string{"spec.url", "spec.filter"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sub := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: "sub", Namespace: "team-a"}, Spec: valid}
			tt.mutate(&sub.Spec)
			raw, err := json.Marshal(sub)
			if err != nil {
				t.Fatal(err)
			}
			resp := SubscriptionValidator{}.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
				Name: "sub", Namespace: "team-a", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
			}})
			if len(tt.want) == 0 {
				if !resp.Allowed {
					t.Fatalf("refused: %+v", resp.Result)
				}
				return
			}
			if resp.Allowed || resp.Result == nil {
				t.Fatal("allowed, want a refusal")
			}
			if resp.Result.Code != http.StatusUnprocessableEntity || resp.Result.Reason != metav1.StatusReasonInvalid {
				t.Errorf("code %d reason %s, want 422 Invalid", resp.Result.Code, resp.Result.Reason)
			}
			if resp.Result.Details == nil || len(resp.Result.Details.Causes) != len(tt.want) {
				t.Fatalf("causes = %+v, want %v", resp.Result.Details, tt.want)
			}
			for i, c := range resp.Result.Details.Causes {
				if c.Field != tt.want[i] {
					t.Errorf("cause %d names %s, want %s", i, c.Field, tt.want[i])
				}
			}
			if !strings.Contains(resp.Result.Message, tt.want[0]+":") {
				t.Errorf("message %q does not name %s", resp.Result.Message, tt.want[0])
			}
		})
	}

	resp := SubscriptionValidator{}.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Object: runtime.RawExtension{Raw: []byte(`{"spec": 1}`)},
	}})
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
		t.Errorf("an undecodable object gave %+v, want 400", resp.Result)
	}
}
