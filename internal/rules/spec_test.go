package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/endpoint"
)

func validSubscriptionSpec() hooklinev1.WebhookSubscriptionSpec {
	return hooklinev1.WebhookSubscriptionSpec{
		URL:        "https://example.com/hooks?token=abc",
		EventTypes: []string{"order.*", "invoice.>"},
		Signing:    hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "s"}},
	}
}

func TestCheckSpec(t *testing.T) {
	dur := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	secretHeader := &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "auth", Key: "token"}}
	tests := []struct {
		name   string
		mutate func(*hooklinev1.WebhookSubscriptionSpec)
		// wantErr is a substring of the error, or "" for a valid spec.
		wantErr string
	}{
		{"valid", func(*hooklinev1.WebhookSubscriptionSpec) {}, ""},
		{"http is left to the dispatcher", func(s *hooklinev1.WebhookSubscriptionSpec) { s.URL = "http://receiver.svc/hooks" }, ""},
		{"valid filter, headers, TLS and delivery", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Filter = `event.data.amount > 100`
			s.Headers = []hooklinev1.Header{{Name: "X-Team", Value: ptr.To("a")}, {Name: "Authorization", ValueFrom: secretHeader}}
			s.TLS = &hooklinev1.TLSSpec{CA: &hooklinev1.CASource{ConfigMapKeyRef: &hooklinev1.SecretKeyReference{Name: "ca", Key: "ca.crt"}}}
			s.Delivery = hooklinev1.DeliveryPolicy{Timeout: dur(5 * time.Minute), Retry: hooklinev1.RetryPolicy{InitialBackoff: dur(time.Second), MaxBackoff: dur(time.Second)}}
		}, ""},

		{"relative URL", func(s *hooklinev1.WebhookSubscriptionSpec) { s.URL = "/hooks" }, "spec.url: must be an absolute URL"},
		{"ftp URL", func(s *hooklinev1.WebhookSubscriptionSpec) { s.URL = "ftp://example.com" }, `spec.url: must use the https or http scheme, not "ftp"`},
		{"user info", func(s *hooklinev1.WebhookSubscriptionSpec) { s.URL = "https://u:p@example.com" }, "spec.url: must not carry user info"},
		{"fragment", func(s *hooklinev1.WebhookSubscriptionSpec) { s.URL = "https://example.com/#x" }, "spec.url: must not carry a fragment"},
		{"no event types", func(s *hooklinev1.WebhookSubscriptionSpec) { s.EventTypes = nil }, "spec.eventTypes: Required value: at least one"},
		{"bad pattern", func(s *hooklinev1.WebhookSubscriptionSpec) { s.EventTypes = []string{"ok", "a..b"} }, "spec.eventTypes[1]: event type pattern \"a..b\": empty segment at position 2"},
		{"tail wildcard not last", func(s *hooklinev1.WebhookSubscriptionSpec) { s.EventTypes = []string{"a.>.b"} }, `spec.eventTypes[0]: event type pattern "a.>.b": ">" must be the last segment`},
		{"overlong segment", func(s *hooklinev1.WebhookSubscriptionSpec) { s.EventTypes = []string{strings.Repeat("x", 65)} }, "spec.eventTypes[0]: event type pattern"},
		{"filter does not compile", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Filter = "event.type ==" }, "spec.filter: line 1, column 14: Syntax error"},
		{"filter not bool", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Filter = `event.type` }, "spec.filter: must be a bool expression"},
		{"filter unknown key", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Filter = `event.kind == "x"` }, `spec.filter: line 1, column 6: event has no key "kind"`},
		{"secret in another namespace", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Signing.SecretRef.Namespace = "other" }, "spec.signing.secretRef.namespace: must not be set"},
		{"header with both sources", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "X-A", Value: ptr.To("a"), ValueFrom: secretHeader}}
		}, "spec.headers[0]: set exactly one of value and valueFrom"},
		{"header with no source", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "X-A", Value: ptr.To("a")}, {Name: "X-B"}}
		}, "spec.headers[1]: set exactly one of value and valueFrom"},
		{"reserved header", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "Webhook-Signature", Value: ptr.To("v1,x")}}
		}, "spec.headers[0].name: " + MsgHeaderReserved},
		{"eight headers from Secrets", func(s *hooklinev1.WebhookSubscriptionSpec) {
			for i := range 8 {
				s.Headers = append(s.Headers, hooklinev1.Header{Name: fmt.Sprintf("X-H%d", i), ValueFrom: secretHeader})
			}
			s.Headers = append(s.Headers, hooklinev1.Header{Name: "X-Static", Value: ptr.To("v")})
		}, ""},
		{"nine headers from Secrets", func(s *hooklinev1.WebhookSubscriptionSpec) {
			for i := range 9 {
				s.Headers = append(s.Headers, hooklinev1.Header{Name: fmt.Sprintf("X-H%d", i), ValueFrom: secretHeader})
			}
		}, "spec.headers: at most 8 headers may take their value from a Secret"},
		{"host header", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "HOST", Value: ptr.To("x")}}
		}, "spec.headers[0].name: " + MsgHeaderReserved},
		{"keep-alive header", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "X-A", Value: ptr.To("a")}, {Name: "Keep-Alive", Value: ptr.To("x")}}
		}, "spec.headers[1].name: " + MsgHeaderReserved},
		{"TE header", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "te", Value: ptr.To("trailers")}}
		}, "spec.headers[0].name: " + MsgHeaderReserved},
		{"header name with a space", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "X Team", Value: ptr.To("a")}}
		}, "spec.headers[0].name: " + MsgHeaderName},
		{"header value with CR LF", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "X-Team", Value: ptr.To("a\r\nX-Injected: 1")}}
		}, "spec.headers[0].value: " + MsgHeaderValueCtrl},
		{"header value with NUL", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "X-Team", Value: ptr.To("a\x00")}}
		}, "spec.headers[0].value: " + MsgHeaderValueCtrl},
		{"header value with a C1 control", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "X-Team", Value: ptr.To("a\u0085b")}}
		}, "spec.headers[0].value: " + MsgHeaderValueCtrl},
		{"header value with tab", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "X-Team", Value: ptr.To("a\tb")}}
		}, "spec.headers[0].value: " + MsgHeaderValueCtrl},
		{"header value with non-ASCII text", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "X-Team", Value: ptr.To("Zürich")}}
		}, ""},
		{"port out of range", func(s *hooklinev1.WebhookSubscriptionSpec) { s.URL = "https://example.com:99999/hooks" }, "spec.url: " + endpointMsgPort},
		{"full-width digits in the host", func(s *hooklinev1.WebhookSubscriptionSpec) { s.URL = "https://１２７．０．０．１/hooks" }, "spec.url: " + endpointMsgHostASCII},
		{"token URL with user info", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Auth = &hooklinev1.EndpointAuth{OAuth2: &hooklinev1.OAuth2ClientCredentials{TokenURL: "https://u:p@auth.example/token", ClientID: "c",
				ClientSecretRef: hooklinev1.SecretKeyReference{Name: "oauth", Key: "secret"}}}
		}, "spec.auth.oauth2.tokenURL: must not carry user info"},
		{"dispatcher name with a slash", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.DispatcherRef = &hooklinev1.DispatcherReference{Name: "Bad/Name"}
		}, "spec.dispatcherRef.name: " + MsgDispatcherName},
		{"dispatcher namespace with spaces", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.DispatcherRef = &hooklinev1.DispatcherReference{Name: "shared", Namespace: "Not A Namespace"}
		}, "spec.dispatcherRef.namespace: " + MsgNamespaceName},
		{"signing secret name", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Signing.SecretRef.Name = "Bad/Name" }, "spec.signing.secretRef.name: " + MsgObjectName},
		{"header Secret name", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{{Name: "Authorization", ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "auth_token", Key: "t"}}}}
		}, "spec.headers[0].valueFrom.secretKeyRef.name: " + MsgObjectName},
		{"CA ConfigMap name", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.TLS = &hooklinev1.TLSSpec{CA: &hooklinev1.CASource{ConfigMapKeyRef: &hooklinev1.SecretKeyReference{Name: "-ca", Key: "ca.crt"}}}
		}, "spec.tls.ca.configMapKeyRef.name: " + MsgObjectName},
		{"client certificate Secret name", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.TLS = &hooklinev1.TLSSpec{ClientCertificateSecretRef: &hooklinev1.LocalObjectReference{Name: "Cert"}}
		}, "spec.tls.clientCertificateSecretRef.name: " + MsgObjectName},
		{"basic auth Secret name", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Auth = &hooklinev1.EndpointAuth{Basic: &hooklinev1.BasicAuth{SecretRef: hooklinev1.LocalObjectReference{Name: "a b"}}}
		}, "spec.auth.basic.secretRef.name: " + MsgObjectName},
		{"IPv6 literal, punycode and maximum values", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.URL = "https://[2001:db8::1]:65535/hooks"
			s.Auth = &hooklinev1.EndpointAuth{OAuth2: &hooklinev1.OAuth2ClientCredentials{TokenURL: "https://xn--bcher-kva.example/token", ClientID: "c",
				ClientSecretRef: hooklinev1.SecretKeyReference{Name: strings.Repeat("a", 253), Key: "secret"}}}
			s.DispatcherRef = &hooklinev1.DispatcherReference{Name: "d" + strings.Repeat("a", 40), Namespace: strings.Repeat("n", 63)}
		}, ""},
		{"CA from both", func(s *hooklinev1.WebhookSubscriptionSpec) {
			ref := &hooklinev1.SecretKeyReference{Name: "ca", Key: "ca.crt"}
			s.TLS = &hooklinev1.TLSSpec{CA: &hooklinev1.CASource{SecretKeyRef: ref, ConfigMapKeyRef: ref}}
		}, "spec.tls.ca: set exactly one of secretKeyRef and configMapKeyRef"},
		{"CA from neither", func(s *hooklinev1.WebhookSubscriptionSpec) { s.TLS = &hooklinev1.TLSSpec{CA: &hooklinev1.CASource{}} }, "spec.tls.ca: set exactly one"},
		{"zero timeout", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Delivery.Timeout = dur(0) }, "spec.delivery.timeout: must be between 1s and 5m"},
		{"long timeout", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Delivery.Timeout = dur(10 * time.Minute) }, "spec.delivery.timeout: must be between 1s and 5m"},
		{"short max age", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Delivery.Retry.MaxAge = dur(time.Second) }, "spec.delivery.retry.maxAge: must be between 1m and 720h"},
		{"tiny initial backoff", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Delivery.Retry.InitialBackoff = dur(time.Millisecond) }, "spec.delivery.retry.initialBackoff: must be between 100ms and 1h"},
		{"huge max backoff", func(s *hooklinev1.WebhookSubscriptionSpec) { s.Delivery.Retry.MaxBackoff = dur(48 * time.Hour) }, "spec.delivery.retry.maxBackoff: must be between 1s and 24h"},
		{"initial above max backoff", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Delivery.Retry.InitialBackoff, s.Delivery.Retry.MaxBackoff = dur(time.Minute), dur(30*time.Second)
		}, "spec.delivery.retry: initialBackoff must not exceed maxBackoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := validSubscriptionSpec()
			tt.mutate(&spec)
			r := CheckSpec(&spec)
			if tt.wantErr == "" {
				if r != nil {
					t.Fatalf("CheckSpec = %v, want nil", r)
				}
				return
			}
			if r == nil {
				t.Fatalf("CheckSpec = nil, want a refusal containing %q", tt.wantErr)
			}
			// wantErr is "<field>: <words>": the message starts with the
			// field and holds the rule's words.
			field, words, ok := strings.Cut(tt.wantErr, ": ")
			if !ok {
				field, words = tt.wantErr, ""
			}
			if !strings.HasPrefix(r.Message, field+":") || !strings.Contains(r.Message, words) {
				t.Fatalf("CheckSpec = %q, want it to start with %q and contain %q", r.Message, field, words)
			}
			if !strings.HasPrefix(field, r.Field) || r.Field == "" {
				t.Errorf("Refusal.Field = %q, want %q", r.Field, field)
			}
			wantReason := hooklinev1.ReasonInvalidSpec
			if strings.HasPrefix(field, "spec.filter") {
				wantReason = hooklinev1.ReasonFilterInvalid
			}
			if r.Reason != wantReason || !r.Stalled() {
				t.Errorf("refusal reason %s (stalled %v), want %s, Stalled", r.Reason, r.Stalled(), wantReason)
			}
		})
	}
}

const (
	endpointMsgPort            = endpoint.MsgPort
	endpointMsgHostASCII       = endpoint.MsgHostASCII
	endpointMsgHostCanonicalIP = endpoint.MsgHostCanonicalIP
)
