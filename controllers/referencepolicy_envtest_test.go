package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// The tests in this file apply the admission policy of config/admission to
// the API server and send subscriptions as a user who may write
// subscriptions but may not read every Secret.

// refpolTimeout bounds the waits for the policy and for RBAC changes to
// take effect.
const refpolTimeout = 30 * time.Second

// refpolApplyPolicy applies config/admission, a policy and its binding,
// and removes them when the test ends. The API server enforces them a moment
// later: refpolCreateEventually waits for that.
func refpolApplyPolicy(t *testing.T) {
	t.Helper()
	kinds := map[string]bool{}
	for _, u := range readManifests(t, "config/admission/*.yaml") {
		if err := k8sClient.Apply(suiteCtx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kubectl")); err != nil {
			t.Fatalf("applying %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		t.Cleanup(func() {
			if err := k8sClient.Delete(suiteCtx, u); client.IgnoreNotFound(err) != nil {
				t.Errorf("deleting %s %s: %v", u.GetKind(), u.GetName(), err)
			}
		})
		kinds[u.GetKind()] = true
	}
	if !kinds["ValidatingAdmissionPolicy"] || !kinds["ValidatingAdmissionPolicyBinding"] {
		t.Fatalf("config/admission holds %v, want a ValidatingAdmissionPolicy and its binding", kinds)
	}
}

// refpolImpersonate returns a client acting as user.
func refpolImpersonate(t *testing.T, user string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(restConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: k8sClient.Scheme()})
	if err != nil {
		t.Fatalf("creating a client for %s: %v", user, err)
	}
	return c
}

// refpolGrant gives user the rules in ns through a Role and RoleBinding
// named name.
func refpolGrant(t *testing.T, ns, name, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := k8sClient.Create(suiteCtx, obj); err != nil {
			t.Fatalf("granting %s to %s: %v", name, user, err)
		}
	}
}

// refpolSubscription is a subscription named name in ns, signed by the
// WebhookSecret "s", changed by mutate.
func refpolSubscription(ns, name string, mutate func(*hooklinev1.WebhookSubscriptionSpec)) *hooklinev1.WebhookSubscription {
	sub := &hooklinev1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: hooklinev1.WebhookSubscriptionSpec{
			URL:        "https://receiver.example.com/hooks",
			EventTypes: []string{"order.*"},
			Signing:    hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "s"}},
		},
	}
	if mutate != nil {
		mutate(&sub.Spec)
	}
	return sub
}

func refpolSecretHeader(name, secret string) hooklinev1.Header {
	return hooklinev1.Header{Name: name, ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: secret, Key: "token"}}}
}

// refpolCreateEventually creates sub as c, retrying while the API server
// still answers as it did before the latest policy or RBAC change: a
// refusal is retried when wantRefusal is empty; an acceptance is undone
// and retried otherwise. It returns when the outcome is the one wanted.
func refpolCreateEventually(t *testing.T, c client.Client, sub *hooklinev1.WebhookSubscription, wantRefusal string) {
	t.Helper()
	eventually(t, refpolTimeout, func() (bool, string) {
		attempt := sub.DeepCopy()
		err := c.Create(suiteCtx, attempt)
		if wantRefusal == "" {
			return err == nil, fmt.Sprintf("creating %s: %v", sub.Name, err)
		}
		if err == nil {
			if err := k8sClient.Delete(suiteCtx, attempt); err != nil {
				t.Fatalf("deleting %s, accepted before the policy applied: %v", sub.Name, err)
			}
			eventually(t, refpolTimeout, func() (bool, string) {
				err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(sub), &hooklinev1.WebhookSubscription{})
				return apierrors.IsNotFound(err), fmt.Sprintf("waiting for %s to go: %v", sub.Name, err)
			})
			return false, fmt.Sprintf("%s was accepted", sub.Name)
		}
		return apierrors.IsForbidden(err) && strings.Contains(err.Error(), wantRefusal),
			fmt.Sprintf("creating %s: %v, want Forbidden with %q", sub.Name, err, wantRefusal)
	})
}

// refpolAssertRefused creates sub as c and checks that the policy refuses
// it with words, and that nothing was stored.
func refpolAssertRefused(t *testing.T, c client.Client, sub *hooklinev1.WebhookSubscription, words string) {
	t.Helper()
	err := c.Create(suiteCtx, sub.DeepCopy())
	if err == nil {
		t.Fatalf("creating %s was accepted, want a refusal with %q", sub.Name, words)
	}
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), words) {
		t.Errorf("creating %s: %v, want Forbidden with %q", sub.Name, err, words)
	}
	if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(sub), &hooklinev1.WebhookSubscription{}); !apierrors.IsNotFound(err) {
		t.Errorf("after the refusal, getting %s gives %v, want NotFound", sub.Name, err)
	}
}

func TestWebhookSubscriptionReferencePolicy(t *testing.T) {
	refpolApplyPolicy(t)
	ns := newNamespace(t)
	const user = "alice"
	alice := refpolImpersonate(t, user)
	refpolGrant(t, ns, "subscription-author", user,
		rbacv1.PolicyRule{APIGroups: []string{hooklinev1.GroupVersion.Group}, Resources: []string{"webhooksubscriptions"}, Verbs: []string{"get", "list", "create", "update", "patch"}},
		rbacv1.PolicyRule{APIGroups: []string{hooklinev1.GroupVersion.Group}, Resources: []string{"webhooksecrets"}, Verbs: []string{"get"}, ResourceNames: []string{"s"}},
	)

	// A subscription that names no Secret needs no more than that.
	refpolCreateEventually(t, alice, refpolSubscription(ns, "plain", nil), "")

	// A Secret header alice may not read is refused, naming the Secret.
	withHeader := refpolSubscription(ns, "with-header", func(s *hooklinev1.WebhookSubscriptionSpec) {
		s.Headers = []hooklinev1.Header{{Name: "X-Team", Value: ptr.To("payments")}, refpolSecretHeader("Authorization", "auth")}
	})
	refpolCreateEventually(t, alice, withHeader, "spec.headers[name=Authorization].valueFrom.secretKeyRef names Secret auth, which user alice may not get")

	t.Run("every kind of reference is checked", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			mutate func(*hooklinev1.WebhookSubscriptionSpec)
			words  string
		}{
			{"ca-from-secret", func(s *hooklinev1.WebhookSubscriptionSpec) {
				s.TLS = &hooklinev1.TLSSpec{CA: &hooklinev1.CASource{SecretKeyRef: &hooklinev1.SecretKeyReference{Name: "private-ca", Key: "ca.crt"}}}
			}, "spec.tls.ca.secretKeyRef names Secret private-ca, which user alice may not get"},
			{"client-certificate", func(s *hooklinev1.WebhookSubscriptionSpec) {
				s.TLS = &hooklinev1.TLSSpec{ClientCertificateSecretRef: &hooklinev1.LocalObjectReference{Name: "client-cert"}}
			}, "spec.tls.clientCertificateSecretRef names Secret client-cert, which user alice may not get"},
			{"ca-from-configmap", func(s *hooklinev1.WebhookSubscriptionSpec) {
				s.TLS = &hooklinev1.TLSSpec{CA: &hooklinev1.CASource{ConfigMapKeyRef: &hooklinev1.SecretKeyReference{Name: "bundle", Key: "ca.crt"}}}
			}, "spec.tls.ca.configMapKeyRef names ConfigMap bundle, which user alice may not get"},
			{"other-webhooksecret", func(s *hooklinev1.WebhookSubscriptionSpec) {
				s.Signing.SecretRef.Name = "payments-signing"
			}, "spec.signing.secretRef names WebhookSecret payments-signing, which user alice may not get"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				refpolAssertRefused(t, alice, refpolSubscription(ns, tt.name, tt.mutate), tt.words)
			})
		}
	})

	// Once alice may get that one Secret, the subscription is accepted.
	refpolGrant(t, ns, "read-auth", user,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"auth"}})
	refpolCreateEventually(t, alice, withHeader, "")

	t.Run("the last of ten Secrets is checked too", func(t *testing.T) {
		tenSecrets := func(clientCert string) func(*hooklinev1.WebhookSubscriptionSpec) {
			return func(s *hooklinev1.WebhookSubscriptionSpec) {
				for i := range 8 {
					s.Headers = append(s.Headers, refpolSecretHeader(fmt.Sprintf("X-Key-%d", i), "auth"))
				}
				s.TLS = &hooklinev1.TLSSpec{
					CA:                         &hooklinev1.CASource{SecretKeyRef: &hooklinev1.SecretKeyReference{Name: "auth", Key: "ca.crt"}},
					ClientCertificateSecretRef: &hooklinev1.LocalObjectReference{Name: clientCert},
				}
			}
		}
		refpolAssertRefused(t, alice, refpolSubscription(ns, "ten-refused", tenSecrets("client-cert")),
			"spec.tls.clientCertificateSecretRef names Secret client-cert, which user alice may not get")
		if err := alice.Create(suiteCtx, refpolSubscription(ns, "ten-accepted", tenSecrets("auth"))); err != nil {
			t.Errorf("creating a subscription naming ten Secrets alice may get: %v", err)
		}
	})

	t.Run("changing the spec of a subscription made by someone else", func(t *testing.T) {
		// An administrator points a subscription at a Secret alice may
		// not read. Alice may still label it, but sending the Secret to
		// another URL is a change she may not make.
		adminMade := refpolSubscription(ns, "admin-made", func(s *hooklinev1.WebhookSubscriptionSpec) {
			s.Headers = []hooklinev1.Header{refpolSecretHeader("Authorization", "admin-only")}
		})
		if err := k8sClient.Create(suiteCtx, adminMade); err != nil {
			t.Fatalf("creating a subscription as an administrator: %v", err)
		}
		update := func(mutate func(*hooklinev1.WebhookSubscription)) error {
			var err error
			eventually(t, refpolTimeout, func() (bool, string) {
				got := &hooklinev1.WebhookSubscription{}
				if err := alice.Get(suiteCtx, client.ObjectKeyFromObject(adminMade), got); err != nil {
					t.Fatalf("getting the subscription as alice: %v", err)
				}
				mutate(got)
				err = alice.Update(suiteCtx, got)
				return !apierrors.IsConflict(err), fmt.Sprintf("updating: %v", err)
			})
			return err
		}
		if err := update(func(s *hooklinev1.WebhookSubscription) { s.Labels = map[string]string{"team": "payments"} }); err != nil {
			t.Errorf("labelling the subscription as alice: %v", err)
		}
		if err := update(func(s *hooklinev1.WebhookSubscription) { s.Spec.Delivery.Concurrency = 2 }); err != nil {
			t.Errorf("changing the delivery concurrency as alice: %v", err)
		}
		err := update(func(s *hooklinev1.WebhookSubscription) { s.Spec.URL = "https://attacker.example/collect" })
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "spec.headers[name=Authorization].valueFrom.secretKeyRef names Secret admin-only, which user alice may not get") {
			t.Errorf("changing the URL as alice: %v, want Forbidden naming Secret admin-only", err)
		}
		got := &hooklinev1.WebhookSubscription{}
		if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(adminMade), got); err != nil {
			t.Fatal(err)
		}
		if got.Spec.URL != adminMade.Spec.URL || got.Labels["team"] != "payments" {
			t.Errorf("stored URL %q and labels %v, want the administrator's URL and alice's label", got.Spec.URL, got.Labels)
		}
	})
}
