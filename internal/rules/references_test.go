package rules

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func TestReferences(t *testing.T) {
	spec := validSubscriptionSpec()
	spec.Headers = []hooklinev1.Header{
		{Name: "X-Static", Value: ptr.To("v")},
		{Name: "Authorization", ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "auth", Key: "token"}}},
		{Name: "X-Api-Key", ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "auth", Key: "api-key"}}},
	}
	spec.TLS = &hooklinev1.TLSSpec{
		CA:                         &hooklinev1.CASource{ConfigMapKeyRef: &hooklinev1.SecretKeyReference{Name: "bundle", Key: "ca.crt"}},
		ClientCertificateSecretRef: &hooklinev1.LocalObjectReference{Name: "client-cert"},
	}
	spec.Auth = &hooklinev1.EndpointAuth{Basic: &hooklinev1.BasicAuth{SecretRef: hooklinev1.LocalObjectReference{Name: "basic"}}}
	want := []Reference{
		{KindSecret, "auth", []string{"token"}, "spec.headers[1].valueFrom.secretKeyRef"},
		{KindSecret, "auth", []string{"api-key"}, "spec.headers[2].valueFrom.secretKeyRef"},
		{KindConfigMap, "bundle", []string{"ca.crt"}, "spec.tls.ca.configMapKeyRef"},
		{KindSecret, "client-cert", []string{"tls.crt", "tls.key"}, "spec.tls.clientCertificateSecretRef"},
		{KindSecret, "basic", []string{"username", "password"}, "spec.auth.basic.secretRef"},
	}
	if diff := cmp.Diff(want, References(&spec)); diff != "" {
		t.Errorf("References (-want +got):\n%s", diff)
	}

	// Missing objects and keys are waited for, and named without values.
	cert := want[3]
	if k := MissingKey(cert, func(k string) bool { return k == "tls.crt" }); k != "tls.key" {
		t.Errorf("missing key = %q, want tls.key", k)
	}
	if k := MissingKey(cert, func(string) bool { return true }); k != "" {
		t.Errorf("missing key = %q, want none", k)
	}
	for _, tt := range []struct {
		r    *Refusal
		want string
	}{
		{MissingReference(cert, false, ""), "Secret client-cert, referenced by spec.tls.clientCertificateSecretRef, not found"},
		{MissingReference(cert, true, "tls.key"), `Secret client-cert, referenced by spec.tls.clientCertificateSecretRef, has no key "tls.key"`},
		{InvalidReferencedValue(want[0], "token", errors.New(MsgHeaderValueCtrl)),
			`Secret auth, referenced by spec.headers[1].valueFrom.secretKeyRef, holds in key "token" a value that cannot be used: ` + MsgHeaderValueCtrl},
	} {
		if tt.r.Reason != hooklinev1.ReasonReferenceNotFound || tt.r.Stalled() || tt.r.Message != tt.want {
			t.Errorf("refusal = %+v (stalled %v), want InProgress ReferenceNotFound %q", tt.r, tt.r.Stalled(), tt.want)
		}
	}
}

func TestCheckDispatcher(t *testing.T) {
	oauth := func(tokenURL string) func(*hooklinev1.WebhookSubscriptionSpec) {
		return func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Auth = &hooklinev1.EndpointAuth{OAuth2: &hooklinev1.OAuth2ClientCredentials{TokenURL: tokenURL, ClientID: "c",
				ClientSecretRef: hooklinev1.SecretKeyReference{Name: "o", Key: "k"}}}
		}
	}
	denyLoopback := func(raw string) error {
		if raw == "https://127.0.0.1/hooks" {
			return errors.New("loopback address")
		}
		return nil
	}
	tests := []struct {
		name       string
		mutate     func(*hooklinev1.WebhookSubscriptionSpec)
		d          Dispatcher
		wantReason string
		wantMsg    string
	}{
		{"admitted", nil, Dispatcher{Key: "infra/d", Admits: true}, "", ""},
		{"not admitted", nil, Dispatcher{Key: "infra/d"}, hooklinev1.ReasonNamespaceNotAllowed,
			"dispatcher infra/d does not admit subscriptions from namespace team-a"},
		{"cannot tell", nil, Dispatcher{Key: "infra/d", AdmitErr: errors.New("bad selector")}, hooklinev1.ReasonNamespaceNotAllowed,
			"dispatcher infra/d cannot admit subscriptions: bad selector"},
		{"plain http refused", func(s *hooklinev1.WebhookSubscriptionSpec) { s.URL = "http://example.com/hooks" }, Dispatcher{Key: "infra/d", Admits: true},
			hooklinev1.ReasonURLNotAllowed, "spec.url uses plain http, which dispatcher infra/d does not allow: use https, or set spec.egress.allowPlainHTTP on the dispatcher"},
		{"plain http allowed", func(s *hooklinev1.WebhookSubscriptionSpec) { s.URL = "http://example.com/hooks" }, Dispatcher{Key: "infra/d", Admits: true, AllowPlainHTTP: true}, "", ""},
		{"plain http token URL refused", oauth("http://auth.example/token"), Dispatcher{Key: "infra/d", Admits: true},
			hooklinev1.ReasonURLNotAllowed, "spec.auth.oauth2.tokenURL uses plain http, which dispatcher infra/d does not allow: use https, or set spec.egress.allowPlainHTTP on the dispatcher"},
		{"invalid token URL", oauth("https://auth.example:0/token"), Dispatcher{Key: "infra/d", Admits: true},
			hooklinev1.ReasonInvalidSpec, "spec.auth.oauth2.tokenURL: port must be a number from 1 to 65535"},
		{"egress policy refuses the URL", func(s *hooklinev1.WebhookSubscriptionSpec) { s.URL = "https://127.0.0.1/hooks" },
			Dispatcher{Key: "infra/d", Admits: true, CheckURL: denyLoopback}, hooklinev1.ReasonURLNotAllowed, "spec.url: loopback address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := validSubscriptionSpec()
			if tt.mutate != nil {
				tt.mutate(&spec)
			}
			r := CheckDispatcher("team-a", &spec, tt.d)
			if tt.wantReason == "" {
				if r != nil {
					t.Fatalf("CheckDispatcher = %v, want nil", r)
				}
				return
			}
			if r == nil || r.Reason != tt.wantReason || r.Message != tt.wantMsg || !r.Stalled() {
				t.Fatalf("CheckDispatcher = %+v, want Stalled %s %q", r, tt.wantReason, tt.wantMsg)
			}
		})
	}
}

func TestStalls(t *testing.T) {
	for reason, want := range map[string]bool{
		hooklinev1.ReasonInvalidSpec:         true,
		hooklinev1.ReasonFilterInvalid:       true,
		hooklinev1.ReasonURLNotAllowed:       true,
		hooklinev1.ReasonNamespaceNotAllowed: true,
		hooklinev1.ReasonReferenceNotFound:   false,
		hooklinev1.ReasonSecretNotReady:      false,
		hooklinev1.ReasonDispatcherNotFound:  false,
		hooklinev1.ReasonDispatcherNotReady:  false,
	} {
		if got := Stalls(reason); got != want {
			t.Errorf("Stalls(%s) = %v, want %v", reason, got, want)
		}
	}
}
