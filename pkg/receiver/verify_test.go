package receiver

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestVerifySpecExample(t *testing.T) {
	// The example of the Standard Webhooks libraries: secret, message and
	// signature all come from there, not from this package.
	key, err := ParseKey(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	h := webhookHeader("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)
	v := Verifier{Now: func() time.Time { return time.Unix(1614265330, 0) }}
	if err := v.Verify(h, body, []Key{key}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := v.Verify(h, []byte(`{"test": 2432232315}`), []Key{key}); !errors.Is(err, ErrNoMatchingSignature) {
		t.Fatalf("tampered body: %v, want ErrNoMatchingSignature", err)
	}
	// The package-level Verify uses the system clock: 2021 is too old.
	if err := Verify(h, body, []Key{key}); !errors.Is(err, ErrTooOld) {
		t.Fatalf("Verify with the system clock: %v, want ErrTooOld", err)
	}
}

func TestVerify(t *testing.T) {
	cur := newHMAC(t, 1)
	prev := newHMAC(t, 2)
	ed := newEd25519(t, 3)
	edPrev := newEd25519(t, 4)
	body := []byte(testBody)
	v1 := signV1(cur.secret, testID, testTS, body)
	v1Prev := signV1(prev.secret, testID, testTS, body)
	v1a := signV1a(ed.priv, testID, testTS, body)

	at := func(d time.Duration) string { return unix(testNow.Add(d)) }
	signedAt := func(d time.Duration) http.Header {
		return webhookHeader(testID, at(d), signV1(cur.secret, testID, at(d), body))
	}
	withTS := func(ts string) http.Header {
		return webhookHeader(testID, ts, signV1(cur.secret, testID, ts, body))
	}
	withID := func(id string) http.Header {
		return webhookHeader(id, testTS, signV1(cur.secret, id, testTS, body))
	}
	repeated := func(name string) http.Header {
		h := webhookHeader(testID, testTS, v1)
		h.Add(name, h.Get(name))
		return h
	}
	// Same bytes as v1 once decoded, but a different text: the last
	// base64 digit before the padding carries two unused bits.
	v1Bytes, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(v1, "v1,"))
	v1Enc := base64.StdEncoding.EncodeToString(v1Bytes)
	alt := flipUnusedBit([]byte(v1Enc), len(v1Enc)-2)
	if d, err := base64.StdEncoding.DecodeString(string(alt)); err != nil || string(d) != string(v1Bytes) {
		t.Fatalf("test setup: %q is not an alternative encoding", alt)
	}
	v1aBytes, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(v1a, "v1a,"))
	// 64 bytes: two padding characters, four unused bits.
	altA := flipUnusedBit([]byte(base64.StdEncoding.EncodeToString(v1aBytes)), len(v1a)-len("v1a,")-3)
	if d, err := base64.StdEncoding.DecodeString(string(altA)); err != nil || string(d) != string(v1aBytes) {
		t.Fatalf("test setup: %q is not an alternative encoding", altA)
	}

	for _, tc := range []struct {
		name   string
		header http.Header
		body   string // testBody when empty
		keys   []Key
		want   error
		msg    string // the error message must contain it
	}{
		{name: "HMAC", header: webhookHeader(testID, testTS, v1), keys: []Key{cur.key}},
		{name: "Ed25519", header: webhookHeader(testID, testTS, v1a), keys: []Key{ed.key}},
		{name: "rotation, receiver has the new key", header: webhookHeader(testID, testTS, v1+" "+v1Prev), keys: []Key{cur.key}},
		{name: "rotation, receiver has the old key", header: webhookHeader(testID, testTS, v1+" "+v1Prev), keys: []Key{prev.key}},
		{name: "receiver holds both keys, sender only the old", header: webhookHeader(testID, testTS, v1Prev), keys: []Key{cur.key, prev.key}},
		{name: "mixed algorithms, HMAC receiver", header: webhookHeader(testID, testTS, v1a+" "+v1), keys: []Key{cur.key}},
		{name: "mixed algorithms, Ed25519 receiver", header: webhookHeader(testID, testTS, v1+" "+v1a), keys: []Key{edPrev.key, ed.key}},
		{name: "unknown versions skipped", header: webhookHeader(testID, testTS, "v2,AAAA v9z,Zm9v "+v1), keys: []Key{cur.key}},
		{name: "malformed entries beside a good one", header: webhookHeader(testID, testTS, "v1 ,abc v1, v1,a,b v1,!! "+v1), keys: []Key{cur.key}},
		{name: "extra spaces", header: webhookHeader(testID, testTS, "  "+v1+"   "+v1Prev+" "), keys: []Key{prev.key}},
		{name: "zero key beside a good one", header: webhookHeader(testID, testTS, v1), keys: []Key{{}, cur.key}},
		{name: "ID with full stops and other allowed characters", header: withID("order.1.2:a_b~c-d+e/f=g@h"), keys: []Key{cur.key}},
		{name: "ID of maximum length", header: withID(strings.Repeat("a", MaxIDLength)), keys: []Key{cur.key}},
		{name: "exactly the tolerance old", header: signedAt(-DefaultTolerance), keys: []Key{cur.key}},
		{name: "exactly the tolerance ahead", header: signedAt(DefaultTolerance), keys: []Key{cur.key}},

		{name: "tampered body", header: webhookHeader(testID, testTS, v1+" "+v1a), body: strings.Replace(testBody, "1999", "1990", 1), keys: []Key{cur.key, ed.key}, want: ErrNoMatchingSignature, msg: "2 signature entries checked against 2 keys"},
		{name: "body with a trailing newline", header: webhookHeader(testID, testTS, v1), body: testBody + "\n", keys: []Key{cur.key}, want: ErrNoMatchingSignature},
		{name: "wrong key", header: webhookHeader(testID, testTS, v1), keys: []Key{prev.key}, want: ErrNoMatchingSignature},
		{name: "wrong Ed25519 key", header: webhookHeader(testID, testTS, v1a), keys: []Key{edPrev.key}, want: ErrNoMatchingSignature},
		{name: "HMAC signature, Ed25519 key", header: webhookHeader(testID, testTS, v1), keys: []Key{ed.key}, want: ErrNoMatchingSignature},
		{name: "Ed25519 signature, HMAC key", header: webhookHeader(testID, testTS, v1a), keys: []Key{cur.key}, want: ErrNoMatchingSignature},
		{name: "HMAC value under v1a", header: webhookHeader(testID, testTS, "v1a,"+strings.TrimPrefix(v1, "v1,")), keys: []Key{cur.key, ed.key}, want: ErrNoMatchingSignature},
		{name: "Ed25519 value under v1", header: webhookHeader(testID, testTS, "v1,"+strings.TrimPrefix(v1a, "v1a,")), keys: []Key{cur.key, ed.key}, want: ErrNoMatchingSignature},
		{name: "other ID", header: webhookHeader("evt_other", testTS, v1), keys: []Key{cur.key}, want: ErrNoMatchingSignature},
		{name: "other timestamp", header: webhookHeader(testID, at(time.Second), v1), keys: []Key{cur.key}, want: ErrNoMatchingSignature},
		{name: "alternative base64 of the HMAC", header: webhookHeader(testID, testTS, "v1,"+string(alt)), keys: []Key{cur.key}, want: ErrNoMatchingSignature},
		{name: "alternative base64 of the Ed25519 signature", header: webhookHeader(testID, testTS, "v1a,"+string(altA)), keys: []Key{ed.key}, want: ErrNoMatchingSignature},
		{name: "unpadded HMAC", header: webhookHeader(testID, testTS, strings.TrimRight(v1, "=")), keys: []Key{cur.key}, want: ErrNoMatchingSignature},
		{name: "truncated Ed25519 signature", header: webhookHeader(testID, testTS, v1a[:len(v1a)-4]), keys: []Key{ed.key}, want: ErrNoMatchingSignature},

		{name: "one second too old", header: signedAt(-DefaultTolerance - time.Second), keys: []Key{cur.key}, want: ErrTooOld, msg: "5m1s before now, tolerance is 5m0s"},
		{name: "one second too new", header: signedAt(DefaultTolerance + time.Second), keys: []Key{cur.key}, want: ErrTooNew, msg: "5m1s after now"},
		{name: "epoch", header: withTS("0"), keys: []Key{cur.key}, want: ErrTooOld},

		{name: "no webhook-id", header: webhookHeader("", testTS, v1), keys: []Key{cur.key}, want: ErrMissingHeader, msg: "missing header: webhook-id"},
		{name: "no webhook-timestamp", header: webhookHeader(testID, "", v1), keys: []Key{cur.key}, want: ErrMissingHeader, msg: "missing header: webhook-timestamp"},
		{name: "no webhook-signature", header: webhookHeader(testID, testTS, ""), keys: []Key{cur.key}, want: ErrMissingHeader, msg: "missing header: webhook-signature"},
		{name: "no headers", header: http.Header{}, keys: []Key{cur.key}, want: ErrMissingHeader, msg: "webhook-id"},
		{name: "empty webhook-id", header: http.Header{"Webhook-Id": {""}, "Webhook-Timestamp": {testTS}, "Webhook-Signature": {v1}}, keys: []Key{cur.key}, want: ErrMissingHeader, msg: "webhook-id"},
		{name: "svix headers are not read", header: http.Header{"Svix-Id": {testID}, "Svix-Timestamp": {testTS}, "Svix-Signature": {v1}}, keys: []Key{cur.key}, want: ErrMissingHeader},

		{name: "repeated webhook-id", header: repeated("Webhook-Id"), keys: []Key{cur.key}, want: ErrInvalidID, msg: "appears 2 times"},
		{name: "repeated webhook-timestamp", header: repeated("Webhook-Timestamp"), keys: []Key{cur.key}, want: ErrInvalidTimestamp},
		{name: "repeated webhook-signature", header: repeated("Webhook-Signature"), keys: []Key{cur.key}, want: ErrInvalidSignatureHeader},
		{name: "ID with a space", header: withID("evt 1"), keys: []Key{cur.key}, want: ErrInvalidID, msg: "position 3"},
		{name: "ID with a brace", header: withID("evt{1"), keys: []Key{cur.key}, want: ErrInvalidID},
		{name: "ID with non-ASCII", header: withID("évt"), keys: []Key{cur.key}, want: ErrInvalidID},
		{name: "ID too long", header: withID(strings.Repeat("a", MaxIDLength+1)), keys: []Key{cur.key}, want: ErrInvalidID, msg: "257 bytes"},

		{name: "timestamp with plus sign", header: withTS("+" + testTS), keys: []Key{cur.key}, want: ErrInvalidTimestamp, msg: "position 0"},
		{name: "timestamp with leading zero", header: withTS("0" + testTS), keys: []Key{cur.key}, want: ErrInvalidTimestamp, msg: "leading zero"},
		{name: "negative timestamp", header: withTS("-5"), keys: []Key{cur.key}, want: ErrInvalidTimestamp},
		{name: "fractional timestamp", header: withTS(testTS + ".0"), keys: []Key{cur.key}, want: ErrInvalidTimestamp},
		{name: "timestamp with a space", header: withTS(" " + testTS), keys: []Key{cur.key}, want: ErrInvalidTimestamp},
		{name: "timestamp in milliseconds overflowing", header: withTS("9223372036854775808"), keys: []Key{cur.key}, want: ErrInvalidTimestamp, msg: "more than 18 digits"},
		{name: "RFC 3339 timestamp", header: withTS("2026-05-04T10:30:00Z"), keys: []Key{cur.key}, want: ErrInvalidTimestamp},

		{name: "signature without version", header: webhookHeader(testID, testTS, strings.TrimPrefix(v1, "v1,")), keys: []Key{cur.key}, want: ErrInvalidSignatureHeader, msg: "no entry of the form"},
		{name: "signature version only", header: webhookHeader(testID, testTS, "v1,"), keys: []Key{cur.key}, want: ErrInvalidSignatureHeader},
		{name: "signature with = instead of comma", header: webhookHeader(testID, testTS, "v1="+strings.TrimPrefix(v1, "v1,")), keys: []Key{cur.key}, want: ErrInvalidSignatureHeader},
		{name: "signature not base64", header: webhookHeader(testID, testTS, "v1,not-base64!"), keys: []Key{cur.key}, want: ErrInvalidSignatureHeader},
		{name: "only spaces", header: webhookHeader(testID, testTS, "   "), keys: []Key{cur.key}, want: ErrInvalidSignatureHeader},
		{name: "too many entries", header: webhookHeader(testID, testTS, strings.Repeat("v1,AAAA ", MaxSignatureEntries)+v1), keys: []Key{cur.key}, want: ErrInvalidSignatureHeader, msg: "more than 32 entries"},
		{name: "header too long", header: webhookHeader(testID, testTS, v1+" v2,"+strings.Repeat("A", 8<<10)), keys: []Key{cur.key}, want: ErrInvalidSignatureHeader, msg: "bytes long"},

		{name: "no keys", header: webhookHeader(testID, testTS, v1), want: ErrNoKeys},
		{name: "only zero keys", header: webhookHeader(testID, testTS, v1), keys: []Key{{}, {}}, want: ErrNoKeys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.body
			if b == "" {
				b = testBody
			}
			err := Verifier{Now: func() time.Time { return testNow }}.Verify(tc.header, []byte(b), tc.keys)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			for _, other := range allVerifyErrors {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %q also matches %v", err, other)
				}
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			for _, secret := range [][]byte{cur.secret, prev.secret} {
				if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(secret)) {
					t.Errorf("error %q holds a key", err)
				}
			}
		})
	}
}

var allVerifyErrors = []error{
	ErrMissingHeader, ErrInvalidID, ErrInvalidTimestamp, ErrTooOld, ErrTooNew,
	ErrInvalidSignatureHeader, ErrNoMatchingSignature, ErrNoKeys,
}

func TestVerifierTolerance(t *testing.T) {
	k := newHMAC(t, 1)
	body := []byte(testBody)
	for _, tc := range []struct {
		tolerance time.Duration
		offset    time.Duration
		want      error
	}{
		{time.Minute, -time.Minute, nil},
		{time.Minute, -time.Minute - time.Second, ErrTooOld},
		{time.Minute, time.Minute + time.Second, ErrTooNew},
		{time.Hour, -59 * time.Minute, nil},
		{time.Hour, 61 * time.Minute, ErrTooNew},
		// Zero and negative tolerances mean the default, never "any".
		{0, -DefaultTolerance, nil},
		{0, -DefaultTolerance - time.Second, ErrTooOld},
		{-time.Hour, -DefaultTolerance - time.Second, ErrTooOld},
	} {
		ts := unix(testNow.Add(tc.offset))
		h := webhookHeader(testID, ts, signV1(k.secret, testID, ts, body))
		v := Verifier{Tolerance: tc.tolerance, Now: func() time.Time { return testNow }}
		if err := v.Verify(h, body, []Key{k.key}); !errors.Is(err, tc.want) {
			t.Errorf("tolerance %s, timestamp %s from now: %v, want %v", tc.tolerance, tc.offset, err, tc.want)
		}
	}
}

func TestParseSignatureHeader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []signatureEntry
	}{
		{"v1,AAAA", []signatureEntry{{"v1", "AAAA"}}},
		{"v1,AAAA v1a,BB==", []signatureEntry{{"v1", "AAAA"}, {"v1a", "BB=="}}},
		{" v1,A  v2,B ", []signatureEntry{{"v1", "A"}, {"v2", "B"}}},
		{"x v1,A ,B v1, v1,A,B v1,A\tB v1,A", []signatureEntry{{"v1", "A"}, {"v1", "A"}}},
		{"", nil},
		{"v1", nil},
		{"v1,a,b", nil},
	} {
		got, err := parseSignatureHeader(tc.in)
		if tc.want == nil {
			if !errors.Is(err, ErrInvalidSignatureHeader) {
				t.Errorf("parseSignatureHeader(%q) = %v, %v; want ErrInvalidSignatureHeader", tc.in, got, err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("parseSignatureHeader(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("parseSignatureHeader(%q)[%d] = %v, want %v", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

// flipUnusedBit changes the lowest bit of the base64 digit at i, which
// the decoder ignores in the last digit before padding.
func flipUnusedBit(enc []byte, i int) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	out := append([]byte(nil), enc...)
	out[i] = alphabet[strings.IndexByte(alphabet, out[i])^1]
	return out
}
