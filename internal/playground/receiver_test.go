package playground

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func newKey(t *testing.T) string {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(raw)
}

// syncBuffer is an io.Writer safe for the receiver's handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// delivery is a request as the dispatcher sends it, signed with key (none
// when empty) at time at.
type delivery struct {
	path, id, body, key string
	at                  time.Time
	signature           string // overrides the computed signature
}

func (d delivery) send(t *testing.T, base string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+d.path, strings.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", d.id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(d.at.Unix(), 10))
	sig := d.signature
	if d.key != "" {
		wh, err := standardwebhooks.NewWebhook(d.key)
		if err != nil {
			t.Fatal(err)
		}
		if sig, err = wh.Sign(d.id, d.at, []byte(d.body)); err != nil {
			t.Fatal(err)
		}
	}
	req.Header.Set("webhook-signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReceiver(t *testing.T) {
	current, previous, other := newKey(t), newKey(t), newKey(t)
	now := time.Now()
	body := `{"type":"order.created","timestamp":"2026-01-01T00:00:00Z","data":{"total":42}}`
	for _, tc := range []struct {
		name     string
		keys     KeySource
		delivery delivery
		wantCode int
		wantLine string
	}{
		{
			name:     "signed with the current key",
			delivery: delivery{path: "/hooks/orders", id: "order-1", body: body, key: current, at: now},
			wantCode: http.StatusNoContent,
			wantLine: "✓ verified order.created id=order-1 from subscription orders\n",
		},
		{
			name:     "signed with the previous key during a rotation",
			delivery: delivery{path: "/hooks/billing", id: "order-2", body: body, key: previous, at: now},
			wantCode: http.StatusNoContent,
			wantLine: "✓ verified order.created id=order-2 from subscription billing\n",
		},
		{
			name:     "both signatures, as during a rotation",
			delivery: delivery{path: "/hooks/orders", id: "order-3", body: body, at: now, signature: "v1,AAAA " + sign(t, current, "order-3", now, body)},
			wantCode: http.StatusNoContent,
			wantLine: "✓ verified order.created id=order-3 from subscription orders\n",
		},
		{
			name:     "signed with another key",
			delivery: delivery{path: "/hooks/orders", id: "order-4", body: body, key: other, at: now},
			wantCode: http.StatusUnauthorized,
			wantLine: "✗ rejected delivery id=order-4 for subscription orders: unable to verify payload, err: no matching signature found\n",
		},
		{
			name:     "too old",
			delivery: delivery{path: "/hooks/orders", id: "order-5", body: body, key: current, at: now.Add(-time.Hour)},
			wantCode: http.StatusUnauthorized,
			wantLine: "✗ rejected delivery id=order-5 for subscription orders: unable to verify payload, err: message timestamp too old\n",
		},
		{
			name:     "unsigned",
			delivery: delivery{path: "/hooks/orders", id: "order-6", body: body, at: now},
			wantCode: http.StatusUnauthorized,
			wantLine: "✗ rejected delivery id=order-6 for subscription orders: unable to verify payload, err: missing required headers\n",
		},
		{
			name:     "body changed after signing",
			delivery: delivery{path: "/hooks/orders", id: "order-7", body: body, at: now, signature: sign(t, current, "order-7", now, body+" ")},
			wantCode: http.StatusUnauthorized,
			wantLine: "✗ rejected delivery id=order-7 for subscription orders: unable to verify payload, err: no matching signature found\n",
		},
		{
			name: "no keys to verify with",
			keys: func(context.Context) ([]string, error) {
				return nil, errors.New("secret demo/demo-signing holds no key yet")
			},
			delivery: delivery{path: "/hooks/orders", id: "order-8", body: body, key: current, at: now},
			wantCode: http.StatusServiceUnavailable,
			wantLine: "✗ could not verify delivery id=order-8 for subscription orders: secret demo/demo-signing holds no key yet\n",
		},
		{
			name:     "a body without a type",
			delivery: delivery{path: "/hooks/orders", id: "order-9", body: `{"data":1}`, key: current, at: now},
			wantCode: http.StatusNoContent,
			wantLine: "✓ verified ? id=order-9 from subscription orders\n",
		},
		{
			name:     "control characters are escaped",
			delivery: delivery{path: "/hooks/or%1B[2Jders", id: "order-10", body: `{"type":"a\u001b[31m"}`, key: current, at: now},
			wantCode: http.StatusNoContent,
			wantLine: "✓ verified a\\x1b[31m id=order-10 from subscription or\\x1b[2Jders\n",
		},
		{
			name:     "an unknown path",
			delivery: delivery{path: "/elsewhere", id: "order-11", body: body, key: current, at: now},
			wantCode: http.StatusNotFound,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := tc.keys
			if keys == nil {
				keys = func(context.Context) ([]string, error) { return []string{current, previous}, nil }
			}
			var out syncBuffer
			srv := httptest.NewServer(NewReceiver(keys, &out))
			defer srv.Close()
			if code := tc.delivery.send(t, srv.URL); code != tc.wantCode {
				t.Errorf("answered %d, want %d", code, tc.wantCode)
			}
			if got := out.String(); got != tc.wantLine {
				t.Errorf("printed %q, want %q", got, tc.wantLine)
			}
		})
	}
}

func sign(t *testing.T, key, id string, at time.Time, body string) string {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(key)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, at, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// The failing endpoint answers 500 every time and counts the attempts of
// each webhook-id, which the dispatcher keeps across retries.
func TestReceiverFailingEndpoint(t *testing.T) {
	var out syncBuffer
	srv := httptest.NewServer(NewReceiver(func(context.Context) ([]string, error) { return nil, errors.New("unused") }, &out))
	defer srv.Close()
	body := `{"type":"order.created","data":1}`
	for _, id := range []string{"a", "a", "b", "a"} {
		if code := (delivery{path: "/fail/flaky", id: id, body: body, at: time.Now()}).send(t, srv.URL); code != http.StatusInternalServerError {
			t.Errorf("answered %d, want 500", code)
		}
	}
	want := "✗ answered 500 to order.created id=a for subscription flaky (attempt 1)\n" +
		"✗ answered 500 to order.created id=a for subscription flaky (attempt 2)\n" +
		"✗ answered 500 to order.created id=b for subscription flaky (attempt 1)\n" +
		"✗ answered 500 to order.created id=a for subscription flaky (attempt 3)\n"
	if got := out.String(); got != want {
		t.Errorf("printed\n%s\nwant\n%s", got, want)
	}
	resp, err := http.Get(srv.URL + "/fail/flaky")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET answered %d, want 405", resp.StatusCode)
	}
}

// SecretKeys reads the keys a WebhookSecret's Secret holds, the current
// one first, afresh on every call.
func TestSecretKeys(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	keys := SecretKeys(kube, ns, "signing")
	if _, err := keys(ctx); err == nil || !strings.Contains(err.Error(), "reading the signing keys from Secret "+ns+"/signing") {
		t.Errorf("missing Secret: %v", err)
	}

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "signing", Namespace: ns}, Data: map[string][]byte{"unrelated": []byte("x")}}
	secret, err := kube.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys(ctx); err == nil || err.Error() != "secret "+ns+"/signing holds no \"signing-key\" key yet" {
		t.Errorf("Secret without keys: %v", err)
	}

	secret.Data = map[string][]byte{hooklinev1.SecretKeySigningKey: []byte("whsec_current")}
	if secret, err = kube.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := keys(ctx); err != nil || strings.Join(got, ",") != "whsec_current" {
		t.Errorf("keys = %v, %v", got, err)
	}

	secret.Data[hooklinev1.SecretKeyPreviousSigningKey] = []byte("whsec_previous")
	if _, err = kube.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := keys(ctx); err != nil || strings.Join(got, ",") != "whsec_current,whsec_previous" {
		t.Errorf("keys after a rotation = %v, %v", got, err)
	}
}
