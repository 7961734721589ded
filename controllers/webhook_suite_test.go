package controllers

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/hookline/hookline/internal/admission"
	"github.com/hookline/hookline/test/testenv"
)

// testWebhookSecret is where the suite's keeper keeps the webhook's CA and
// certificate, as the manager does in its namespace.
var testWebhookSecret = types.NamespacedName{Namespace: testOperatorNamespace, Name: "hookline-webhook-tls"}

// startWebhookConfiguration installs the ValidatingWebhookConfiguration of
// config/webhook, pointed at a local port instead of the Service (the test
// API server runs outside any cluster), and returns the webhook server and
// the keeper of its certificate for that address.
func startWebhookConfiguration(cfg *rest.Config) (*admission.CertKeeper, webhook.Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("finding a free port for the webhook: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return nil, nil, fmt.Errorf("freeing the webhook port: %w", err)
	}
	objs, err := testenv.ReadManifests("config/webhook/manifests.yaml")
	if err != nil {
		return nil, nil, err
	}
	scheme := runtime.NewScheme()
	if err := admissionregistrationv1.AddToScheme(scheme); err != nil {
		return nil, nil, fmt.Errorf("registering admission kinds: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, fmt.Errorf("creating a client for the webhook configuration: %w", err)
	}
	var name string
	for _, u := range objs {
		if u.GetKind() != "ValidatingWebhookConfiguration" {
			continue
		}
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, vwc); err != nil {
			return nil, nil, fmt.Errorf("decoding the webhook configuration: %w", err)
		}
		for i := range vwc.Webhooks {
			cc := &vwc.Webhooks[i].ClientConfig
			url := "https://127.0.0.1:" + strconv.Itoa(port) + *cc.Service.Path
			cc.Service, cc.URL = nil, &url
		}
		if err := c.Create(context.Background(), vwc); err != nil {
			return nil, nil, fmt.Errorf("creating the webhook configuration: %w", err)
		}
		name = vwc.Name
	}
	if name == "" {
		return nil, nil, fmt.Errorf("config/webhook/manifests.yaml holds no ValidatingWebhookConfiguration")
	}
	keeper := &admission.CertKeeper{
		Secret:               testWebhookSecret,
		WebhookConfiguration: name,
		DNSNames:             []string{"hookline-webhook." + testOperatorNamespace + ".svc"},
		IPs:                  []net.IP{net.IPv4(127, 0, 0, 1)},
		Clock:                clocktesting.NewFakeClock(time.Now()),
	}
	server := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, TLSOpts: []func(*tls.Config){func(t *tls.Config) {
		t.GetCertificate = keeper.GetCertificate
	}}})
	return keeper, server, nil
}

// waitForWebhook waits until the webhook server listens; the test binary's
// timeout bounds the wait.
func waitForWebhook(ctx context.Context, server webhook.Server) error {
	check := server.StartedChecker()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return fmt.Errorf("building the webhook check: %w", err)
	}
	for check(req) != nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the webhook server: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
