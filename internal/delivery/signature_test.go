package delivery

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/keys"
)

// deliver sends orderCreated signed with ks and returns what arrived.
func deliver(t *testing.T, clk clock.PassiveClock, ks ...keys.Key) captured {
	t.Helper()
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: clk}
	if res := s.Send(context.Background(), Target{URL: srv.URL, Keys: ks}, orderCreated); !res.Success {
		t.Fatalf("Send failed: %+v", res)
	}
	return rec.only(t)
}

func referenceVerifier(t *testing.T, k keys.Key) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(k.Encoded())
	if err != nil {
		t.Fatalf("reference library refused the key: %v", err)
	}
	return wh
}

// verifyEd25519 checks the v1a entries of a webhook-signature header the
// way the Standard Webhooks specification defines them: an Ed25519
// signature over "id.timestamp.body".
func verifyEd25519(t *testing.T, publicKey string, h http.Header, body []byte) bool {
	t.Helper()
	pub, err := keys.ParsePublicKey(publicKey)
	if err != nil {
		t.Fatalf("parse public key: %v", err)
	}
	signed := []byte(h.Get("Webhook-Id") + "." + h.Get("Webhook-Timestamp") + "." + string(body))
	for _, entry := range strings.Split(h.Get("Webhook-Signature"), " ") {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1a" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			t.Fatalf("v1a entry is not base64: %v", err)
		}
		if ed25519.Verify(pub, signed, raw) {
			return true
		}
	}
	return false
}

func TestSignatureVerifiesWithReferenceLibrary(t *testing.T) {
	key := newKey(t, keys.HMACSHA256)
	// The real clock, so that the library's timestamp tolerance applies.
	got := deliver(t, clock.RealClock{}, key)
	if err := referenceVerifier(t, key).Verify(got.Body, got.Header); err != nil {
		t.Fatalf("reference library: %v", err)
	}
	tampered := []byte(strings.Replace(string(got.Body), "1999", "1", 1))
	if err := referenceVerifier(t, key).Verify(tampered, got.Header); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Fatalf("tampered body: reference library returned %v, want ErrNoMatchingSignature", err)
	}
	other := newKey(t, keys.HMACSHA256)
	if err := referenceVerifier(t, other).Verify(got.Body, got.Header); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Fatalf("unrelated key: reference library returned %v, want ErrNoMatchingSignature", err)
	}
}

func TestSignatureSpecSecret(t *testing.T) {
	// The specification's example secret, parsed the way Secrets hold it.
	key, err := keys.Parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := deliver(t, fakeClock(), key)
	if err := referenceVerifier(t, key).VerifyIgnoringTimestamp(got.Body, got.Header); err != nil {
		t.Fatalf("reference library: %v", err)
	}
}

func TestSignatureRotationOverlap(t *testing.T) {
	previous := newKey(t, keys.HMACSHA256)
	current := newKey(t, keys.HMACSHA256)
	got := deliver(t, fakeClock(), current, previous)

	if n := len(strings.Split(got.Header.Get("Webhook-Signature"), " ")); n != 2 {
		t.Fatalf("webhook-signature has %d entries, want 2", n)
	}
	for name, k := range map[string]keys.Key{"previous": previous, "current": current} {
		if err := referenceVerifier(t, k).VerifyIgnoringTimestamp(got.Body, got.Header); err != nil {
			t.Errorf("receiver holding only the %s key: %v", name, err)
		}
		tampered := append([]byte(nil), got.Body...)
		tampered[len(tampered)-2] = ' '
		if err := referenceVerifier(t, k).VerifyIgnoringTimestamp(tampered, got.Header); err == nil {
			t.Errorf("receiver holding only the %s key accepted a tampered body", name)
		}
	}
}

func TestSignatureEd25519(t *testing.T) {
	key := newKey(t, keys.Ed25519)
	got := deliver(t, fakeClock(), key)

	if !strings.HasPrefix(got.Header.Get("Webhook-Signature"), "v1a,") {
		t.Fatalf("webhook-signature = %q, want a v1a entry", got.Header.Get("Webhook-Signature"))
	}
	if !verifyEd25519(t, key.PublicKey(), got.Header, got.Body) {
		t.Fatal("v1a signature does not verify with the public key")
	}
	tampered := []byte(strings.Replace(string(got.Body), "EUR", "USD", 1))
	if verifyEd25519(t, key.PublicKey(), got.Header, tampered) {
		t.Fatal("v1a signature verified a tampered body")
	}
	otherPub := newKey(t, keys.Ed25519).PublicKey()
	if verifyEd25519(t, otherPub, got.Header, got.Body) {
		t.Fatal("v1a signature verified with an unrelated public key")
	}
	// The reference library knows only v1: an HMAC receiver must see "no
	// match", not a parse error, when only v1a entries are present.
	hmacReceiver := referenceVerifier(t, newKey(t, keys.HMACSHA256))
	if err := hmacReceiver.VerifyIgnoringTimestamp(got.Body, got.Header); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Fatalf("reference library on a v1a-only header returned %v, want ErrNoMatchingSignature", err)
	}
}

func TestSignatureMixedAlgorithmsDuringRotation(t *testing.T) {
	// Moving a subscription from HMAC to Ed25519: both receivers keep
	// working during the overlap, and the reference library skips v1a.
	edKey := newKey(t, keys.Ed25519)
	hmacKey := newKey(t, keys.HMACSHA256)
	got := deliver(t, fakeClock(), edKey, hmacKey)

	sig := got.Header.Get("Webhook-Signature")
	if !strings.HasPrefix(sig, "v1a,") || !strings.Contains(sig, " v1,") {
		t.Fatalf("webhook-signature = %q, want v1a then v1", sig)
	}
	if err := referenceVerifier(t, hmacKey).VerifyIgnoringTimestamp(got.Body, got.Header); err != nil {
		t.Fatalf("HMAC receiver: %v", err)
	}
	if !verifyEd25519(t, edKey.PublicKey(), got.Header, got.Body) {
		t.Fatal("Ed25519 receiver: v1a does not verify")
	}
}
