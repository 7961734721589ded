package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestCRDCarriesTheRules reads the generated CRDs and checks that their CEL
// rules are those of this package: the reserved header list, and the words
// of each rule the Go checks give too.
func TestCRDCarriesTheRules(t *testing.T) {
	sub := readCRD(t, "hookline.dev_webhooksubscriptions.yaml")
	spec := []string{"spec", "versions", "0", "schema", "openAPIV3Schema", "properties", "spec", "properties"}
	headerItem := append(append([]string{}, spec...), "headers", "items")
	if !hasRule(t, sub, headerItem, ReservedHeaderCEL(), MsgHeaderReserved) {
		t.Errorf("the CRD's header rule is not\n%s\nrun make manifests after changing ReservedHeaderNames, and copy ReservedHeaderCEL() into the marker on api/v1alpha1.Header", ReservedHeaderCEL())
	}
	if !hasMessage(t, sub, append(append([]string{}, headerItem...), "properties", "value"), MsgHeaderValueCtrl) {
		t.Errorf("spec.headers[].value lacks the rule %q", MsgHeaderValueCtrl)
	}
	for _, field := range [][]string{
		append(append([]string{}, spec...), "url"),
		append(append([]string{}, spec...), "auth", "properties", "oauth2", "properties", "tokenURL"),
	} {
		for _, msg := range []string{endpointMsgHostASCII, endpointMsgHostCanonicalIP, endpointMsgPort} {
			if !hasMessage(t, sub, field, msg) {
				t.Errorf("%s lacks the rule %q", strings.Join(field, "."), msg)
			}
		}
	}
	for _, c := range []struct {
		path []string
		msg  string
	}{
		{append(append([]string{}, spec...), "dispatcherRef", "properties", "name"), MsgDispatcherName},
		{append(append([]string{}, spec...), "dispatcherRef", "properties", "namespace"), MsgNamespaceName},
		{append(append([]string{}, spec...), "signing", "properties", "secretRef", "properties", "name"), MsgObjectName},
		{append(append([]string{}, spec...), "tls", "properties", "clientCertificateSecretRef", "properties", "name"), MsgObjectName},
		{append(append([]string{}, spec...), "auth", "properties", "oauth2", "properties", "clientSecretRef", "properties", "name"), MsgObjectName},
	} {
		if !hasMessage(t, sub, c.path, c.msg) {
			t.Errorf("%s lacks the rule %q", strings.Join(c.path, "."), c.msg)
		}
	}
	d := readCRD(t, "hookline.dev_webhookdispatchers.yaml")
	proxy := append(append([]string{}, spec...), "egress", "properties", "proxyURL")
	for _, msg := range []string{endpointMsgHostASCII, endpointMsgHostCanonicalIP, endpointMsgPort} {
		if !hasMessage(t, d, proxy, msg) {
			t.Errorf("spec.egress.proxyURL lacks the rule %q", msg)
		}
	}
}

func TestReservedHeaders(t *testing.T) {
	// Everything the sender sets or the transport owns, in any case.
	for _, name := range []string{"webhook-id", "Webhook-Signature", "WEBHOOK-TIMESTAMP", "Content-Type", "content-length", "Host",
		"User-Agent", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Te", "Trailer", "Upgrade"} {
		if !IsReservedHeader(name) {
			t.Errorf("IsReservedHeader(%q) = false", name)
		}
		if err := ValidateHeaderName(name); err == nil || err.Error() != MsgHeaderReserved {
			t.Errorf("ValidateHeaderName(%q) = %v, want %q", name, err, MsgHeaderReserved)
		}
	}
	for _, name := range []string{"Authorization", "X-Team", "Webhook", "Content-Encoding", "Accept"} {
		if err := ValidateHeaderName(name); err != nil {
			t.Errorf("ValidateHeaderName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", "X Team", "X:Team", "Ünï", "X\nY"} {
		if err := ValidateHeaderName(name); err == nil || err.Error() != MsgHeaderName {
			t.Errorf("ValidateHeaderName(%q) = %v, want %q", name, err, MsgHeaderName)
		}
	}
	for v, ok := range map[string]bool{
		"": true, "Bearer abc": true, "Zürich": true, "a b": true,
		"a\r\nb": false, "a\nb": false, "a\rb": false, "a\x00b": false, "a\tb": false, "a\x7fb": false, "a\u0085b": false, "\x1b[31m": false,
	} {
		if err := ValidateHeaderValue(v); (err == nil) != ok {
			t.Errorf("ValidateHeaderValue(%q) = %v, want ok %v", v, err, ok)
		}
	}
}

func readCRD(t *testing.T, file string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", file))
	if err != nil {
		t.Fatalf("reading the CRD: %v", err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatalf("decoding the CRD: %v", err)
	}
	return crd
}

// rulesAt returns the x-kubernetes-validations of the schema at path.
func rulesAt(t *testing.T, obj map[string]any, path []string) []map[string]any {
	t.Helper()
	var cur any = obj
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			if p != "0" || len(c) == 0 {
				t.Fatalf("path %v: index %s", path, p)
			}
			cur = c[0]
		default:
			t.Fatalf("path %v: %s is not in the CRD", path, p)
		}
	}
	m, ok := cur.(map[string]any)
	if !ok {
		t.Fatalf("path %v is not in the CRD", path)
	}
	var out []map[string]any
	list, _ := m["x-kubernetes-validations"].([]any)
	for _, r := range list {
		out = append(out, r.(map[string]any))
	}
	return out
}

func hasRule(t *testing.T, obj map[string]any, path []string, rule, msg string) bool {
	for _, r := range rulesAt(t, obj, path) {
		if r["rule"] == rule && r["message"] == msg {
			return true
		}
	}
	return false
}

func hasMessage(t *testing.T, obj map[string]any, path []string, msg string) bool {
	for _, r := range rulesAt(t, obj, path) {
		if r["message"] == msg {
			return true
		}
	}
	return false
}
