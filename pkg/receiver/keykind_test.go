package receiver

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestVerifyWrongKeyKind: a request signed only with one kind of key,
// checked with keys of the other kind only, says so (and is still a
// failure to match, for callers that only know ErrNoMatchingSignature); a
// key of the right kind that does not match is an ordinary mismatch.
func TestVerifyWrongKeyKind(t *testing.T) {
	hmacKey, ed := newHMAC(t, 1), newEd25519(t, 2)
	body := []byte(testBody)
	v := Verifier{Now: func() time.Time { return testNow }}
	edSigned := webhookHeader(testID, testTS, signV1a(ed.priv, testID, testTS, body))
	hmacSigned := webhookHeader(testID, testTS, signV1(hmacKey.secret, testID, testTS, body))

	for _, tc := range []struct {
		name    string
		err     error
		wrong   bool
		message string
	}{
		{"Ed25519 signature, HMAC key", v.Verify(edSigned, body, []Key{hmacKey.key}), true,
			"verify webhook: no matching signature: no key of the kind the signatures need: the request is signed with Ed25519 (v1a), the keys given are HMAC-SHA256"},
		{"HMAC signature, Ed25519 key", v.Verify(hmacSigned, body, []Key{ed.key}), true,
			"verify webhook: no matching signature: no key of the kind the signatures need: the request is signed with HMAC-SHA256 (v1), the keys given are Ed25519"},
		{"HMAC signature, another HMAC key", v.Verify(hmacSigned, body, []Key{newHMAC(t, 9).key}), false, "no matching signature: 1 signature entries checked against 1 keys"},
		{"HMAC signature, keys of both kinds, none matching", v.Verify(hmacSigned, body, []Key{newHMAC(t, 9).key, ed.key}), false, "checked against 2 keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, ErrNoMatchingSignature) || errors.Is(tc.err, ErrWrongKeyKind) != tc.wrong || !strings.Contains(tc.err.Error(), tc.message) {
				t.Errorf("error %v; want ErrNoMatchingSignature, ErrWrongKeyKind %v, a message with %q", tc.err, tc.wrong, tc.message)
			}
		})
	}
}
