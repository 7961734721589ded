package receiver

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// FuzzParseSignatureHeader feeds arbitrary webhook-signature values to the
// parser and to Verify with keys that did sign the message: the header
// must parse into well-formed entries or be refused, and a delivery may
// only pass when the header holds a genuine entry and the body is the one
// signed.
func FuzzParseSignatureHeader(f *testing.F) {
	h := newHMAC(f, 1)
	ed := newEd25519(f, 2)
	body := []byte(testBody)
	v1 := signV1(h.secret, testID, testTS, body)
	v1a := signV1a(ed.priv, testID, testTS, body)
	for _, seed := range []string{
		v1, v1a, v1 + " " + v1a, "v1a,AAAA " + v1, "  " + v1 + "  ", "v1,", ",", "v1", "",
		"v1," + strings.Repeat("A", 600), strings.Repeat("v1,AAAA ", 40), "v2,abc,def v1,x=y", "\x00v1,AA",
		v1 + ",", strings.TrimRight(v1, "="), strings.Replace(v1a, "v1a", "v1", 1),
	} {
		f.Add(seed)
	}
	keys := []Key{h.key, ed.key}
	v := Verifier{Now: func() time.Time { return testNow }}
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := parseSignatureHeader(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSignatureHeader) {
				t.Fatalf("parse error %v is not ErrInvalidSignatureHeader", err)
			}
			if len(s) >= 16 && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q echoes the header", err)
			}
		} else {
			if len(entries) == 0 || len(entries) > MaxSignatureEntries {
				t.Fatalf("%d entries", len(entries))
			}
			parts := make([]string, len(entries))
			for i, e := range entries {
				if !validVersion(e.version) || !validSignatureValue(e.value) {
					t.Fatalf("malformed entry %+v returned", e)
				}
				parts[i] = e.version + "," + e.value
			}
			again, err := parseSignatureHeader(strings.Join(parts, " "))
			if err != nil || len(again) != len(entries) {
				t.Fatalf("re-parsing %q: %v, %v", parts, again, err)
			}
		}

		header := webhookHeader(testID, testTS, s)
		genuine := false
		for e := range strings.SplitSeq(s, " ") {
			genuine = genuine || e == v1 || e == v1a
		}
		if err := v.Verify(header, body, keys); err == nil && !genuine {
			t.Fatalf("accepted %q, which holds no genuine entry", s)
		}
		tampered := append(append([]byte(nil), body...), '\n')
		if err := v.Verify(header, tampered, keys); err == nil {
			t.Fatalf("accepted a tampered body with %q", s)
		}
	})
}

// FuzzVerify signs arbitrary messages with an HMAC and an Ed25519 key and
// presents them with a possibly different body: a body other than the one
// signed is never accepted, the signed one is never refused for its
// signature, and what passes with the HMAC key passes the Standard
// Webhooks reference library too.
func FuzzVerify(f *testing.F) {
	f.Add(testID, testTS, []byte(testBody), []byte(testBody), "")
	f.Add(testID, testTS, []byte(testBody), []byte(testBody+" "), "")
	f.Add("evt.1.2", testTS, []byte(`{}`), []byte(`{}`), "v2,AAAA")
	f.Add("evt.1", "2", []byte(testTS+".{}"), []byte(`{}`), "")
	f.Add("a b", testTS, []byte{}, []byte{}, "v1,AAAA ")
	f.Add(testID, "+"+testTS, []byte("x"), []byte("x"), "")
	f.Add(testID, "0"+testTS, []byte("x"), []byte("x"), "")
	f.Add(testID, "0", []byte("x"), []byte("x"), "")
	f.Add("", testTS, []byte("x"), []byte("x"), "")
	f.Add(testID, testTS, []byte("x"), []byte("x"), strings.Repeat("v1,A ", 31))
	f.Add(testID, testTS, []byte("abc"), []byte("abd"), "v1a,"+strings.Repeat("A", 86)+"==")

	h := newHMAC(f, 1)
	ed := newEd25519(f, 2)
	ref, err := standardwebhooks.NewWebhookRaw(h.secret)
	if err != nil {
		f.Fatal(err)
	}
	secretText := b64of(h.secret)
	f.Fuzz(func(t *testing.T, id, ts string, signed, presented []byte, extra string) {
		sig := signV1(h.secret, id, ts, signed) + " " + signV1a(ed.priv, id, ts, signed)
		if extra != "" {
			sig = extra + " " + sig
		}
		header := webhookHeader(id, ts, sig)
		now := testNow
		if n, err := strconv.ParseInt(ts, 10, 64); err == nil && n > -1<<40 && n < 1<<40 {
			now = time.Unix(n, 0)
		}
		v := Verifier{Now: func() time.Time { return now }}
		same := bytes.Equal(signed, presented)

		errH := v.Verify(header, presented, []Key{h.key})
		errE := v.Verify(header, presented, []Key{ed.key})
		for _, err := range []error{errH, errE} {
			switch {
			case err == nil && !same:
				t.Fatalf("accepted body %q signed as %q", presented, signed)
			case err != nil && same && errors.Is(err, ErrNoMatchingSignature):
				t.Fatalf("refused a genuine signature: %v", err)
			case err != nil && strings.Contains(err.Error(), secretText):
				t.Fatalf("error holds the secret: %v", err)
			}
		}
		if errH == nil {
			if err := ref.VerifyIgnoringTimestamp(presented, header); err != nil {
				t.Fatalf("accepted what the reference library refuses (%v): id %q ts %q", err, id, ts)
			}
		}
	})
}
