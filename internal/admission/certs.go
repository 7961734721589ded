package admission

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Keys of the Secret that holds the webhook's CA and serving certificate,
// the layout of kubernetes.io/tls Secrets plus the CA, as cert-manager
// writes it too.
const (
	secretKeyCACert = "ca.crt"
	secretKeyCAKey  = "ca.key"
)

// Validity of what CertKeeper generates, and how long before the end a
// certificate is renewed.
const (
	caValidity      = 10 * 365 * 24 * time.Hour
	servingValidity = 365 * 24 * time.Hour
	renewBefore     = 30 * 24 * time.Hour
	// recheckEvery is how often a keeper reads the Secret and the webhook
	// configuration again: another replica may have renewed the
	// certificate, or an upgrade reset the CA bundle.
	recheckEvery = 10 * time.Minute
	// retryAfter is how soon a failed check is tried again: until the
	// first succeeds, the webhook has no certificate to serve.
	retryAfter = 10 * time.Second
)

// CertKeeper manages the webhook's serving certificate without
// cert-manager: a self-signed CA and a serving certificate for the
// webhook Service's DNS names, kept in one Secret in the operator's
// namespace, and the CA injected into the ValidatingWebhookConfiguration.
//
// Every manager replica runs one (the webhook is served by all of them,
// leader or not). The first to find no usable Secret creates it; the others
// lose the race with AlreadyExists or a conflict and use what the winner
// wrote, so all replicas serve the same certificate under one CA.
type CertKeeper struct {
	Client client.Client
	// Secret is where the CA and certificate are kept.
	Secret types.NamespacedName
	// WebhookConfiguration is the ValidatingWebhookConfiguration whose
	// webhooks get the CA bundle.
	WebhookConfiguration string
	// DNSNames and IPs are the serving certificate's subject alternative
	// names: the Service's names (name.namespace.svc).
	DNSNames []string
	IPs      []net.IP
	Clock    clock.Clock

	mu   sync.RWMutex
	cert *tls.Certificate
}

// GetCertificate serves the current certificate; it fails until the keeper
// has loaded one.
func (k *CertKeeper) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.cert == nil {
		return nil, errors.New("the webhook serving certificate is not loaded yet")
	}
	return k.cert, nil
}

// Loaded is a readiness check: it fails until the keeper has loaded a
// certificate, so that no traffic reaches a replica that cannot answer.
func (k *CertKeeper) Loaded(*http.Request) error {
	_, err := k.GetCertificate(nil)
	return err
}

// NeedLeaderElection is false: every replica serves the webhook.
func (k *CertKeeper) NeedLeaderElection() bool { return false }

// Start keeps the certificate until ctx ends. Errors are logged and tried
// again at the next check.
func (k *CertKeeper) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("webhook-certs")
	for {
		next := recheckEvery
		if err := k.Sync(ctx); err != nil {
			log.Error(err, "Keeping the webhook serving certificate")
			next = retryAfter
		}
		select {
		case <-ctx.Done():
			return nil
		case <-k.Clock.After(next):
		}
	}
}

// Sync makes sure the Secret holds a CA and a serving certificate that is
// not due for renewal, loads it, and injects the CA into the webhook
// configuration.
func (k *CertKeeper) Sync(ctx context.Context) error {
	bundle, err := k.ensureSecret(ctx)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(bundle.certPEM, bundle.keyPEM)
	if err != nil {
		return fmt.Errorf("loading the webhook serving certificate of Secret %s: %w", k.Secret, err)
	}
	k.mu.Lock()
	k.cert = &cert
	k.mu.Unlock()
	return k.injectCABundle(ctx, bundle.caPEM)
}

type certBundle struct {
	caPEM, caKeyPEM, certPEM, keyPEM []byte
}

// ensureSecret reads the Secret, creating or renewing its contents when
// needed, and returns what it finally holds.
func (k *CertKeeper) ensureSecret(ctx context.Context) (certBundle, error) {
	for attempt := 0; ; attempt++ {
		secret := &corev1.Secret{}
		err := k.Client.Get(ctx, k.Secret, secret)
		if apierrors.IsNotFound(err) {
			b, err := k.generate(nil)
			if err != nil {
				return certBundle{}, err
			}
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: k.Secret.Namespace, Name: k.Secret.Name,
					Labels: map[string]string{"app.kubernetes.io/part-of": "hookline", "app.kubernetes.io/component": "webhook"}},
				Type: corev1.SecretTypeTLS,
			}
			b.into(secret)
			err = k.Client.Create(ctx, secret)
			if apierrors.IsAlreadyExists(err) && attempt < 3 {
				continue // another replica won; use its certificate
			}
			if err != nil {
				return certBundle{}, fmt.Errorf("creating the webhook certificate Secret %s: %w", k.Secret, err)
			}
			return b, nil
		}
		if err != nil {
			return certBundle{}, fmt.Errorf("getting the webhook certificate Secret %s: %w", k.Secret, err)
		}
		b := certBundle{caPEM: secret.Data[secretKeyCACert], caKeyPEM: secret.Data[secretKeyCAKey],
			certPEM: secret.Data[corev1.TLSCertKey], keyPEM: secret.Data[corev1.TLSPrivateKeyKey]}
		if !k.needsRenewal(b) {
			return b, nil
		}
		renewed, err := k.generate(&b)
		if err != nil {
			return certBundle{}, err
		}
		renewed.into(secret)
		err = k.Client.Update(ctx, secret)
		if apierrors.IsConflict(err) && attempt < 3 {
			continue // another replica renewed it first
		}
		if err != nil {
			return certBundle{}, fmt.Errorf("renewing the webhook certificate in Secret %s: %w", k.Secret, err)
		}
		return renewed, nil
	}
}

func (b certBundle) into(s *corev1.Secret) {
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[secretKeyCACert] = b.caPEM
	s.Data[secretKeyCAKey] = b.caKeyPEM
	s.Data[corev1.TLSCertKey] = b.certPEM
	s.Data[corev1.TLSPrivateKeyKey] = b.keyPEM
}

// needsRenewal says whether b lacks a usable CA or serving certificate, or
// one of them ends within renewBefore, or the certificate does not cover
// the keeper's names.
func (k *CertKeeper) needsRenewal(b certBundle) bool {
	ca, _, err := parseCA(b)
	if err != nil || k.Clock.Now().Add(renewBefore).After(ca.NotAfter) {
		return true
	}
	cert, err := parseCert(b.certPEM)
	if err != nil || k.Clock.Now().Add(renewBefore).After(cert.NotAfter) {
		return true
	}
	if _, err := tls.X509KeyPair(b.certPEM, b.keyPEM); err != nil {
		return true
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return true
	}
	for _, n := range k.DNSNames {
		if cert.VerifyHostname(n) != nil {
			return true
		}
	}
	for _, ip := range k.IPs {
		if cert.VerifyHostname(ip.String()) != nil {
			return true
		}
	}
	return false
}

// generate issues a serving certificate, under the CA of prev when it is
// still good for longer than the new certificate, else under a new CA.
func (k *CertKeeper) generate(prev *certBundle) (certBundle, error) {
	now := k.Clock.Now()
	var b certBundle
	ca, caKey, err := parseCA(derefBundle(prev))
	if err != nil || now.Add(servingValidity+renewBefore).After(ca.NotAfter) {
		caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return b, fmt.Errorf("generating the webhook CA key: %w", err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               pkix.Name{CommonName: "hookline-webhook-ca"},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(caValidity),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
		if err != nil {
			return b, fmt.Errorf("signing the webhook CA: %w", err)
		}
		if ca, err = x509.ParseCertificate(der); err != nil {
			return b, fmt.Errorf("reading the webhook CA: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return b, fmt.Errorf("generating the webhook serving key: %w", err)
	}
	cn := "hookline-webhook"
	if len(k.DNSNames) > 0 {
		cn = k.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     k.DNSNames,
		IPAddresses:  k.IPs,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(servingValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return b, fmt.Errorf("signing the webhook serving certificate: %w", err)
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return b, fmt.Errorf("encoding the webhook CA key: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return b, fmt.Errorf("encoding the webhook serving key: %w", err)
	}
	b.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	b.caKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKeyDER})
	b.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	b.keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return b, nil
}

func derefBundle(b *certBundle) certBundle {
	if b == nil {
		return certBundle{}
	}
	return *b
}

func parseCA(b certBundle) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	ca, err := parseCert(b.caPEM)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(b.caKeyPEM)
	if block == nil {
		return nil, nil, errors.New("no CA key")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA key: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("the CA certificate is not a CA")
	}
	return ca, key, nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(fmt.Sprintf("reading random bytes: %v", err))
	}
	return n
}

// injectCABundle sets caPEM on every webhook of the configuration that does
// not carry it yet.
func (k *CertKeeper) injectCABundle(ctx context.Context, caPEM []byte) error {
	for attempt := 0; ; attempt++ {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := k.Client.Get(ctx, types.NamespacedName{Name: k.WebhookConfiguration}, cfg); err != nil {
			return fmt.Errorf("getting ValidatingWebhookConfiguration %s: %w", k.WebhookConfiguration, err)
		}
		changed := false
		for i := range cfg.Webhooks {
			if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, caPEM) {
				cfg.Webhooks[i].ClientConfig.CABundle = caPEM
				changed = true
			}
		}
		if !changed {
			return nil
		}
		err := k.Client.Update(ctx, cfg)
		if apierrors.IsConflict(err) && attempt < 3 {
			continue
		}
		if err != nil {
			return fmt.Errorf("injecting the CA bundle into ValidatingWebhookConfiguration %s: %w", k.WebhookConfiguration, err)
		}
		return nil
	}
}
