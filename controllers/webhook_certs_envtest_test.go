package controllers

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hookline/hookline/internal/admission"
)

// TestWebhookCertKeeperReplicas runs two keepers, as two manager replicas
// do, against one Secret and one webhook configuration: they end up serving
// the same certificate under one CA, which the configuration trusts, and a
// certificate due for renewal is renewed under the same CA.
func TestWebhookCertKeeperReplicas(t *testing.T) {
	ns := newNamespace(t)
	cfgName := "hookline-keeper-test-" + ns
	none := admissionregistrationv1.SideEffectClassNone
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: cfgName},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "nothing.hookline.dev",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/never")},
			// Matches no request: only the CA bundle is under test.
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{"example.invalid"}, APIVersions: []string{"v1"}, Resources: []string{"nothings"}},
			}},
		}},
	}
	if err := k8sClient.Create(suiteCtx, vwc); err != nil {
		t.Fatalf("creating the webhook configuration: %v", err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(suiteCtx, vwc) })

	clk := clocktesting.NewFakeClock(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	secret := types.NamespacedName{Namespace: ns, Name: "webhook-tls"}
	newKeeper := func() *admission.CertKeeper {
		return &admission.CertKeeper{Client: k8sClient, Secret: secret, WebhookConfiguration: cfgName,
			DNSNames: []string{"hookline-webhook." + ns + ".svc"}, Clock: clk}
	}
	keepers := []*admission.CertKeeper{newKeeper(), newKeeper()}
	syncAll := func() {
		var wg sync.WaitGroup
		errs := make([]error, len(keepers))
		for i, k := range keepers {
			wg.Go(func() { errs[i] = k.Sync(suiteCtx) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("keeper %d: %v", i, err)
			}
		}
	}
	// served returns the leaf each keeper serves and the Secret's CA.
	served := func() ([]*x509.Certificate, []byte) {
		s := &corev1.Secret{}
		if err := k8sClient.Get(suiteCtx, secret, s); err != nil {
			t.Fatalf("getting the Secret: %v", err)
		}
		var leaves []*x509.Certificate
		for i, k := range keepers {
			c, err := k.GetCertificate(&tls.ClientHelloInfo{})
			if err != nil {
				t.Fatalf("keeper %d serves nothing: %v", i, err)
			}
			leaf, err := x509.ParseCertificate(c.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			leaves = append(leaves, leaf)
		}
		return leaves, s.Data["ca.crt"]
	}

	if err := keepers[0].Loaded(nil); err == nil {
		t.Errorf("a keeper that has not synced reports its certificate loaded")
	}
	syncAll()
	if err := keepers[0].Loaded(nil); err != nil {
		t.Errorf("after a sync the readiness check says %v", err)
	}
	leaves, caPEM := served()
	if !leaves[0].Equal(leaves[1]) {
		t.Errorf("the replicas serve different certificates")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("the Secret's ca.crt holds no certificate")
	}
	if _, err := leaves[0].Verify(x509.VerifyOptions{DNSName: "hookline-webhook." + ns + ".svc", Roots: pool, CurrentTime: clk.Now()}); err != nil {
		t.Errorf("the served certificate does not verify against the Secret's CA: %v", err)
	}
	got := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := k8sClient.Get(suiteCtx, client.ObjectKey{Name: cfgName}, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Webhooks[0].ClientConfig.CABundle, caPEM) {
		t.Errorf("the webhook configuration's caBundle is not the Secret's CA")
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatal("ca.crt is not PEM")
	}

	// Eleven months on, the certificate is due: renewed, under the same CA.
	clk.Step(340 * 24 * time.Hour)
	syncAll()
	renewed, caAfter := served()
	if renewed[0].Equal(leaves[0]) {
		t.Errorf("the certificate was not renewed eleven months on")
	}
	if !renewed[0].Equal(renewed[1]) {
		t.Errorf("after renewal the replicas serve different certificates")
	}
	if !bytes.Equal(caAfter, caPEM) {
		t.Errorf("renewing the certificate replaced a CA that is good for years")
	}
	if !renewed[0].NotAfter.After(clk.Now().Add(300 * 24 * time.Hour)) {
		t.Errorf("the renewed certificate ends %s, too soon", renewed[0].NotAfter)
	}

	// A Secret someone broke is filled again.
	s := &corev1.Secret{}
	if err := k8sClient.Get(suiteCtx, secret, s); err != nil {
		t.Fatal(err)
	}
	s.Data["tls.crt"] = []byte("not a certificate")
	if err := k8sClient.Update(suiteCtx, s); err != nil {
		t.Fatalf("breaking the Secret: %v", err)
	}
	syncAll()
	if _, ca := served(); len(ca) == 0 {
		t.Errorf("a broken Secret was not filled again")
	}
}
