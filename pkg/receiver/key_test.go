package receiver

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

// The Standard Webhooks specification's example secret.
const specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

var idPattern = regexp.MustCompile(`^k-[0-9a-f]{16}$`)

func b64of(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestParseKeyForms(t *testing.T) {
	ed := newEd25519(t, 1)
	pub := ed.priv.Public().(ed25519.PublicKey)
	secret := newHMAC(t, 9).secret
	for _, tc := range []struct {
		name   string
		in     string
		alg    Algorithm
		sameAs string // another form that must give the same ID
	}{
		{"spec secret", specSecret, HMACSHA256, strings.TrimPrefix(specSecret, "whsec_")},
		{"bare base64 secret", b64of(secret), HMACSHA256, "whsec_" + b64of(secret)},
		{"secret with newline", "whsec_" + b64of(secret) + "\n", HMACSHA256, "whsec_" + b64of(secret)},
		{"24-byte secret", "whsec_" + b64of(bytes.Repeat([]byte{1}, 24)), HMACSHA256, b64of(bytes.Repeat([]byte{1}, 24))},
		{"64-byte secret", "whsec_" + b64of(bytes.Repeat([]byte{2}, 64)), HMACSHA256, b64of(bytes.Repeat([]byte{2}, 64))},
		{"public key", "whpk_" + b64of(pub), Ed25519, "whsk_" + b64of(ed.priv)},
		{"private key keeps the public half", " whsk_" + b64of(ed.priv) + "\n", Ed25519, "whpk_" + b64of(pub)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.in)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if k.Algorithm() != tc.alg || k.IsZero() || !idPattern.MatchString(k.ID()) {
				t.Fatalf("got algorithm %q, zero %v, ID %q; want %q, false, k-<16 hex>", k.Algorithm(), k.IsZero(), k.ID(), tc.alg)
			}
			other, err := ParseKey(tc.sameAs)
			if err != nil {
				t.Fatalf("ParseKey(other form): %v", err)
			}
			if other.ID() != k.ID() || other.Algorithm() != k.Algorithm() {
				t.Fatalf("other form gives %v, want %v", other, k)
			}
		})
	}
	// An Ed25519 key parsed from the private form holds no private
	// material: only the public key.
	k, err := ParseKey("whsk_" + b64of(ed.priv))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.m.public, pub) || k.m.secret != nil {
		t.Fatal("whsk_ key does not hold exactly the public key")
	}
}

func TestParseKeyErrors(t *testing.T) {
	ed := newEd25519(t, 1)
	other := newEd25519(t, 2)
	mismatched := append(append([]byte(nil), ed.priv[:32]...), other.priv[32:]...)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"blank", " \n\t", "empty"},
		{"prefix only", "whsec_", "is 0 bytes, want 24 to 64"},
		{"bad base64", "whsec_MfKQ9r8GKYqrTwjUPD8I!PZIo2LaLaSw", "invalid base64 at byte 20"},
		{"unprefixed garbage", "this is no key at all", "unprefixed HMAC-SHA256 secret: invalid base64"},
		{"short secret", "whsec_" + b64of(make([]byte, 23)), "is 23 bytes, want 24 to 64"},
		{"long secret", "whsec_" + b64of(make([]byte, 65)), "is 65 bytes, want 24 to 64"},
		{"short public key", "whpk_" + b64of(make([]byte, 31)), "public key is 31 bytes, want 32"},
		{"public key bad base64", "whpk_AAAA*AAA", "whpk_ Ed25519 public key: invalid base64"},
		{"short private key", "whsk_" + b64of(ed.priv[:63]), "private key is 63 bytes, want 64"},
		{"private key halves differ", "whsk_" + b64of(mismatched), "public half does not match the seed"},
		{"unpadded", "whsec_" + base64.RawStdEncoding.EncodeToString(make([]byte, 32)), "invalid base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.in)
			if err == nil {
				t.Fatalf("ParseKey accepted it as %v", k)
			}
			if !k.IsZero() {
				t.Errorf("non-zero Key with an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if body := strings.TrimSpace(tc.in); len(body) > 10 && strings.Contains(err.Error(), body[6:]) {
				t.Errorf("error %q echoes the input", err)
			}
		})
	}
}

func TestKeyNeverPrintsMaterial(t *testing.T) {
	h := newHMAC(t, 3)
	ed := newEd25519(t, 3)
	type config struct {
		Name string
		Key  Key
	}
	for _, tc := range []struct {
		key      Key
		material []byte
	}{
		{h.key, h.secret},
		{ed.key, ed.priv.Public().(ed25519.PublicKey)},
	} {
		forms := []string{tc.key.String()}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			forms = append(forms, fmt.Sprintf(verb, tc.key), fmt.Sprintf(verb, config{"c", tc.key}), fmt.Sprintf(verb, &config{"c", tc.key}))
		}
		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, nil))
		logger.Info("Key", "key", tc.key, "config", config{"c", tc.key})
		forms = append(forms, buf.String())
		if !strings.Contains(buf.String(), `"id":"`+tc.key.ID()+`"`) {
			t.Errorf("log %s lacks the key ID", buf.String())
		}
		for _, s := range forms {
			for _, enc := range []string{b64of(tc.material), fmt.Sprintf("%x", tc.material), fmt.Sprintf("%X", tc.material), fmt.Sprint(tc.material), string(tc.material)} {
				if strings.Contains(s, enc) {
					t.Fatalf("output %q contains the key material", s)
				}
			}
		}
		if got, want := fmt.Sprintf("%#v", tc.key), string(tc.key.Algorithm())+" key "+tc.key.ID(); got != want {
			t.Errorf("%%#v = %q, want %q", got, want)
		}
	}
	var zero Key
	if zero.String() != "<no key>" || zero.ID() != "" || zero.Algorithm() != "" || !zero.IsZero() {
		t.Errorf("zero Key: String %q ID %q Algorithm %q", zero, zero.ID(), zero.Algorithm())
	}
	if got := zero.LogValue().String(); got != "<no key>" {
		t.Errorf("zero Key LogValue = %q", got)
	}
}
