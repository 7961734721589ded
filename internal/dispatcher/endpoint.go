package dispatcher

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/report"
	"github.com/hookline/hookline/internal/rules"
)

// refusal is why a subscription cannot be served, as its Accepted condition
// says it.
type refusal struct {
	reason, msg string
}

// refuseRef is the refusal for a referenced object that is missing (found
// false) or lacks key, in the words of the rules package.
func refuseRef(kind, field, name string, found bool, key string) *refusal {
	r := rules.MissingReference(rules.Reference{Kind: kind, Name: name, Field: field}, found, key)
	return &refusal{r.Reason, r.Message}
}

// refs reads the Secrets and ConfigMaps one subscription names, recording
// each in used so their watches are kept.
type refs struct {
	s    *subscriptions
	ctx  context.Context
	sub  *hooklinev1.WebhookSubscription
	used map[refKey]bool
	user string
}

func (r refs) secret(name string) *corev1.Secret {
	k := types.NamespacedName{Namespace: r.sub.Namespace, Name: name}
	r.used[refKey{kindSecret, k}] = true
	return r.s.refs.secret(r.ctx, k, r.user)
}

// secretKey returns one key of a Secret. The refusal never reveals which
// keys the Secret has.
func (r refs) secretKey(field, name, key string) ([]byte, *refusal) {
	sec := r.secret(name)
	if sec == nil {
		return nil, refuseRef(rules.KindSecret, field, name, false, "")
	}
	v, ok := sec.Data[key]
	if !ok {
		return nil, refuseRef(rules.KindSecret, field, name, true, key)
	}
	return v, nil
}

func (r refs) configMapKey(field, name, key string) ([]byte, *refusal) {
	k := types.NamespacedName{Namespace: r.sub.Namespace, Name: name}
	r.used[refKey{kindConfigMap, k}] = true
	cm := r.s.refs.configMap(r.ctx, k, r.user)
	if cm == nil {
		return nil, refuseRef(rules.KindConfigMap, field, name, false, "")
	}
	if v, ok := cm.Data[key]; ok {
		return []byte(v), nil
	}
	if v, ok := cm.BinaryData[key]; ok {
		return v, nil
	}
	return nil, refuseRef(rules.KindConfigMap, field, name, true, key)
}

// tlsIdentity reads spec.tls: the CA bundle and the client certificate.
func (r refs) tlsIdentity(spec *hooklinev1.TLSSpec) (delivery.TLSIdentity, *refusal) {
	var id delivery.TLSIdentity
	if spec == nil {
		return id, nil
	}
	var bad *refusal
	if ca := spec.CA; ca != nil {
		switch {
		case ca.SecretKeyRef != nil:
			id.CABundle, bad = r.secretKey("spec.tls.ca.secretKeyRef", ca.SecretKeyRef.Name, ca.SecretKeyRef.Key)
		case ca.ConfigMapKeyRef != nil:
			id.CABundle, bad = r.configMapKey("spec.tls.ca.configMapKeyRef", ca.ConfigMapKeyRef.Name, ca.ConfigMapKeyRef.Key)
		}
		if bad != nil {
			return id, bad
		}
	}
	if ref := spec.ClientCertificateSecretRef; ref != nil {
		const field = "spec.tls.clientCertificateSecretRef"
		if id.ClientCertificate, bad = r.secretKey(field, ref.Name, corev1.TLSCertKey); bad != nil {
			return id, bad
		}
		if id.ClientKey, bad = r.secretKey(field, ref.Name, corev1.TLSPrivateKeyKey); bad != nil {
			return id, bad
		}
	}
	return id, nil
}

// authenticator reads spec.auth. An OAuth2 authenticator is kept from prev
// while its settings and secret are unchanged, so its cached token is too.
// The token URL has passed rules.CheckDispatcher, with the dispatcher's
// egress policy, in desired.
func (r refs) authenticator(spec *hooklinev1.EndpointAuth, client *http.Client, prev *deliveryState) (delivery.Authenticator, string, *refusal) {
	if spec == nil {
		return nil, "", nil
	}
	if b := spec.Basic; b != nil {
		const field = "spec.auth.basic.secretRef"
		user, bad := r.secretKey(field, b.SecretRef.Name, corev1.BasicAuthUsernameKey)
		if bad != nil {
			return nil, "", bad
		}
		pass, bad := r.secretKey(field, b.SecretRef.Name, corev1.BasicAuthPasswordKey)
		if bad != nil {
			return nil, "", bad
		}
		return delivery.BasicAuth{Username: strings.TrimSpace(string(user)), Password: strings.TrimSpace(string(pass))}, "", nil
	}
	o := spec.OAuth2
	if o == nil {
		return nil, "", nil
	}
	secret, bad := r.secretKey("spec.auth.oauth2.clientSecretRef", o.ClientSecretRef.Name, o.ClientSecretRef.Key)
	if bad != nil {
		return nil, "", bad
	}
	cfg := delivery.OAuth2Config{TokenURL: o.TokenURL, ClientID: o.ClientID, ClientSecret: strings.TrimSpace(string(secret)),
		Scopes: o.Scopes, Clock: r.s.clock}
	if o.Audience != "" {
		cfg.EndpointParams = url.Values{"audience": {o.Audience}}
	}
	// The fingerprint tells a changed configuration without keeping the
	// secret itself around.
	h := sha256.New()
	for _, part := range append([]string{cfg.TokenURL, cfg.ClientID, cfg.ClientSecret, o.Audience, fmt.Sprintf("%p", client)}, cfg.Scopes...) {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	fingerprint := fmt.Sprintf("%x", h.Sum(nil))
	if prev != nil && prev.authFingerprint == fingerprint && prev.target.Auth != nil {
		return prev.target.Auth, fingerprint, nil
	}
	return delivery.NewOAuth2(cfg, client), fingerprint, nil
}

// validation is the state of a subscription's endpoint validation
// handshake on this instance.
type validation struct {
	url, origin string
	running     bool
	done        bool
	result      delivery.HandshakeResult
	at          time.Time
}

// validationRetry is how soon a refused or failed handshake is tried again.
const validationRetry = time.Minute

// origin is what the dispatcher calls itself in the handshake: the DNS name
// of its Service.
func (s *subscriptions) origin(d *hooklinev1.WebhookDispatcher) string {
	if u, err := url.Parse(d.Status.Address); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return d.Name + "-dispatcher." + d.Namespace + ".svc"
}

// validate applies the endpoint validation handshake to st: it starts the
// handshake when the URL has none yet and holds deliveries until it is
// allowed. It returns the rate the endpoint allows, in requests per second,
// or 0 when it sets none.
func (s *subscriptions) validate(ctx context.Context, sv *served, st *deliveryState) float64 {
	if st.obj.Spec.EndpointValidation != hooklinev1.EndpointValidationCloudEvents {
		return 0
	}
	origin := st.origin
	now := s.clock.Now()
	s.mu.Lock()
	v := sv.validation
	stale := v == nil || v.url != st.target.URL || v.origin != origin ||
		v.done && !v.result.Allowed && now.Sub(v.at) >= validationRetry
	if stale && (v == nil || !v.running) {
		v = &validation{url: st.target.URL, origin: origin, running: true}
		sv.validation = v
		requested := 0
		if rl := st.obj.Spec.Delivery.RateLimit; rl != nil {
			requested = int(rl.RequestsPerSecond) * 60
		}
		target := st.target
		key := sv.key.Namespace + "/" + sv.key.Name
		go func() {
			res := s.sender.Handshake(ctx, target, origin, requested)
			s.mu.Lock()
			v.running, v.done, v.result, v.at = false, true, res, s.clock.Now()
			s.mu.Unlock()
			if res.Allowed {
				s.log.Info("The endpoint accepted the validation handshake", "subscription", key, "allowedRate", res.Rate)
			} else {
				s.log.Warn("The endpoint refused the validation handshake", "subscription", key, "reason", res.Message)
				s.work.AddAfter(key, validationRetry)
			}
			s.work.Add(key)
		}()
	}
	done, res := v.done && v.url == st.target.URL, v.result
	s.mu.Unlock()

	switch {
	case !done:
		st.awaitingValidation = true
		st.validation = &report.Validation{Reason: hooklinev1.ReasonValidationPending,
			Message: "Waiting for the endpoint to answer the validation handshake (OPTIONS with WebHook-Request-Origin: " + origin + ")"}
	case !res.Allowed:
		st.awaitingValidation = true
		st.validation = &report.Validation{Reason: hooklinev1.ReasonValidationRefused,
			Message: "The endpoint refused the validation handshake: " + res.Message + "; deliveries wait, and it is asked again every minute"}
	default:
		msg := "The endpoint allows deliveries from " + origin
		if res.Rate > 0 {
			msg += fmt.Sprintf(" at up to %d requests a minute", res.Rate)
		}
		st.validation = &report.Validation{Allowed: true, Reason: hooklinev1.ReasonValidationAccepted, Message: msg}
		if res.Rate > 0 {
			return float64(res.Rate) / 60
		}
	}
	return 0
}
