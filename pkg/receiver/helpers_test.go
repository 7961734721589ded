package receiver

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// testNow is the receiver's clock in most tests; whole seconds, so that
// webhook-timestamp is exact.
var testNow = time.Date(2026, 5, 4, 10, 30, 0, 0, time.UTC)

const (
	testID   = "evt_2uS7pQ4ZRk"
	testBody = `{"type":"order.created","timestamp":"2026-05-04T10:29:58.123456789Z","data":{"orderId":"o-1001","amount":1999,"currency":"EUR"}}`
)

var testTS = strconv.FormatInt(testNow.Unix(), 10)

// hmacPair is an HMAC secret and its Key.
type hmacPair struct {
	secret []byte
	key    Key
}

// newHMAC makes a reproducible 32-byte secret; distinct seeds give
// distinct secrets.
func newHMAC(t testing.TB, seed byte) hmacPair {
	t.Helper()
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = seed + byte(i)*7
	}
	k, err := ParseKey("whsec_" + base64.StdEncoding.EncodeToString(secret))
	if err != nil {
		t.Fatalf("parse HMAC key: %v", err)
	}
	return hmacPair{secret: secret, key: k}
}

// edPair is an Ed25519 private key and the Key of its public half.
type edPair struct {
	priv ed25519.PrivateKey
	key  Key
}

func newEd25519(t testing.TB, seed byte) edPair {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed ^ byte(i*13)
	}
	priv := ed25519.NewKeyFromSeed(s)
	k, err := ParseKey("whpk_" + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatalf("parse Ed25519 public key: %v", err)
	}
	return edPair{priv: priv, key: k}
}

// signV1 and signV1a sign independently of the code under test, straight
// from the specification's definition.
func signV1(secret []byte, id, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func signV1a(priv ed25519.PrivateKey, id, ts string, body []byte) string {
	msg := append([]byte(id+"."+ts+"."), body...)
	return "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg))
}

// webhookHeader builds the three headers, leaving out empty values.
func webhookHeader(id, ts, sig string) http.Header {
	h := http.Header{}
	if id != "" {
		h.Set(HeaderID, id)
	}
	if ts != "" {
		h.Set(HeaderTimestamp, ts)
	}
	if sig != "" {
		h.Set(HeaderSignature, sig)
	}
	return h
}

// testClock is a settable clock for Now fields.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: testNow} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// unix renders t as webhook-timestamp.
func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
