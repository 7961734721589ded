package cli

import (
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/hookline/hookline/internal/keys"
)

func TestParseCapture(t *testing.T) {
	const body = `{"type":"order.created","timestamp":"2026-11-29T19:59:57Z","data":{"total":42}}`
	for _, tc := range []struct {
		name     string
		raw      string
		wantHdr  http.Header
		wantBody string
		warning  string
		err      string
	}{
		{
			name:     "CRLF with request line",
			raw:      "POST /hooks HTTP/1.1\r\nHost: example.com\r\nWebhook-Id: order-1\r\nContent-Length: 79\r\n\r\n" + body,
			wantHdr:  http.Header{"Host": {"example.com"}, "Webhook-Id": {"order-1"}, "Content-Length": {"79"}},
			wantBody: body,
		},
		{
			name:     "LF, lower-case names, no request line",
			raw:      "webhook-id: order-1\nwebhook-timestamp:1700000000\n\n" + body,
			wantHdr:  http.Header{"Webhook-Id": {"order-1"}, "Webhook-Timestamp": {"1700000000"}},
			wantBody: body,
		},
		{
			name:     "a final newline beyond Content-Length is dropped",
			raw:      "POST / HTTP/1.1\nContent-Length: 2\n\n{}\n",
			wantHdr:  http.Header{"Content-Length": {"2"}},
			wantBody: "{}",
		},
		{
			name:     "a body of another length is kept, with a warning",
			raw:      "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{\"a\":1}",
			wantHdr:  http.Header{"Content-Length": {"2"}},
			wantBody: `{"a":1}`,
			warning:  "the body is 7 bytes but Content-Length says 2",
		},
		{
			name:     "the body keeps its own line endings",
			raw:      "A: b\r\n\r\n{\n}\r\n",
			wantHdr:  http.Header{"A": {"b"}},
			wantBody: "{\n}\r\n",
		},
		{
			name:     "chunked",
			raw:      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
			wantHdr:  http.Header{"Transfer-Encoding": {"chunked"}},
			wantBody: `{"a":1}`,
		},
		{
			name:     "folded header",
			raw:      "X-Long: one\r\n  two\r\n\r\n",
			wantHdr:  http.Header{"X-Long": {"one two"}},
			wantBody: "",
		},
		{
			name:     "no blank line",
			raw:      "Webhook-Id: a\n",
			wantHdr:  http.Header{"Webhook-Id": {"a"}},
			wantBody: "",
			warning:  "no blank line after the headers",
		},
		{name: "not a header", raw: "POST / HTTP/1.1\r\nthis is not a header\r\n\r\n", err: "line 1 is not a header"},
		{name: "nothing", raw: "", err: "no headers found"},
		{name: "continuation first", raw: " x\n\n", err: "line 1 continues no header"},
		{name: "broken chunks", raw: "Transfer-Encoding: chunked\n\nzz\r\n", err: "decoding the chunked body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCapture([]byte(tc.raw))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.header, tc.wantHdr) || string(got.body) != tc.wantBody {
				t.Errorf("header %v body %q\nwant %v %q", got.header, got.body, tc.wantHdr, tc.wantBody)
			}
			warnings := strings.Join(got.warnings, "; ")
			if (tc.warning == "") != (warnings == "") || !strings.Contains(warnings, tc.warning) {
				t.Errorf("warnings %q, want %q", warnings, tc.warning)
			}
		})
	}
}

// signedCapture is the raw text of a delivery signed by signers, sent at
// testNow minus age seconds.
func signedCapture(id, body string, ageSeconds int64, signers ...keys.Key) string {
	ts := testNow.Unix() - ageSeconds
	var sigs []string
	for _, k := range signers {
		sigs = append(sigs, k.Sign(id, ts, []byte(body)))
	}
	return "POST /hooks/orders HTTP/1.1\r\n" +
		"Host: billing.example.com\r\n" +
		"Content-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"Webhook-Id: " + id + "\r\n" +
		"Webhook-Timestamp: " + strconv.FormatInt(ts, 10) + "\r\n" +
		"Webhook-Signature: " + strings.Join(sigs, " ") + "\r\n" +
		"\r\n" + body
}

func generate(t *testing.T, alg keys.Algorithm) keys.Key {
	t.Helper()
	k, err := keys.Generate(alg, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerifyCommand(t *testing.T) {
	current, previous := generate(t, keys.HMACSHA256), generate(t, keys.HMACSHA256)
	ed := generate(t, keys.Ed25519)
	const body = `{"type":"order.created","timestamp":"2026-11-29T19:59:57Z","data":{"total":42}}`
	good := signedCapture("order-1042", body, 3, current)
	file := filepath.Join(t.TempDir(), "request.http")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(good, "\r\n", "\n")), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		out   string
	}{
		{"valid", good, []string{"--key", current.Encoded()}, ExitOK,
			"valid: signed by " + current.ID() + " (webhook-id order-1042, 3s old)\n"},
		{"valid from a file with LF line endings, among several keys", "", []string{"-f", file, "--key", previous.Encoded(), "--key", current.Encoded()}, ExitOK,
			"valid: signed by " + current.ID() + " (webhook-id order-1042, 3s old)\n"},
		{"both keys sign during an overlap", signedCapture("order-1042", body, 0, current, previous),
			[]string{"--key", previous.Encoded(), "--key", current.Encoded()}, ExitOK,
			"valid: signed by " + previous.ID() + " and " + current.ID() + " (webhook-id order-1042, 0s old)\n"},
		{"Ed25519 with the public key", signedCapture("order-1042", body, 3, ed), []string{"--key", ed.PublicKey()}, ExitOK,
			"valid: signed by " + ed.ID() + " (webhook-id order-1042, 3s old)\n"},
		{"tampered body", strings.Replace(good, `"total":42`, `"total":43`, 1), []string{"--key", current.Encoded(), "--key", previous.Encoded()}, ExitFailed,
			"invalid: no signature matches the keys given (tried " + current.ID() + ", " + previous.ID() + ")\n"},
		{"another key", good, []string{"--key", previous.Encoded()}, ExitFailed,
			"invalid: no signature matches the keys given (tried " + previous.ID() + ")\n"},
		{"Ed25519-signed, checked with an HMAC key", signedCapture("order-1042", body, 3, ed), []string{"--key", current.Encoded()}, ExitFailed,
			"invalid: the keys given are of the wrong kind for the signatures present: the request is signed with Ed25519 (v1a), the keys given are HMAC-SHA256; " +
				"pass the key that signs them (--key whpk_... for Ed25519, whsec_... for HMAC-SHA256, or --secret WEBHOOKSECRET)\n"},
		{"HMAC-signed, checked with an Ed25519 public key", good, []string{"--key", ed.PublicKey()}, ExitFailed,
			"invalid: the keys given are of the wrong kind for the signatures present: the request is signed with HMAC-SHA256 (v1), the keys given are Ed25519; " +
				"pass the key that signs them (--key whpk_... for Ed25519, whsec_... for HMAC-SHA256, or --secret WEBHOOKSECRET)\n"},
		{"too old", signedCapture("order-1042", body, 7*60+12, current), []string{"--key", current.Encoded()}, ExitFailed,
			"invalid: timestamp 7m12s too old (tolerance 5m)\n"},
		{"too old for a tighter tolerance", good, []string{"--key", current.Encoded(), "--tolerance", "2s"}, ExitFailed,
			"invalid: timestamp 3s too old (tolerance 2s)\n"},
		{"an old capture verified as of its time", signedCapture("order-1042", body, 3600, current),
			[]string{"--key", current.Encoded(), "--now", "2026-11-29T19:00:10Z"}, ExitOK,
			"valid: signed by " + current.ID() + " (webhook-id order-1042, 10s old)\n"},
		{"from the future", signedCapture("order-1042", body, -600, current), []string{"--key", current.Encoded()}, ExitFailed,
			"invalid: timestamp 10m in the future (tolerance 5m)\n"},
		{"missing signature", strings.Replace(good, "Webhook-Signature:", "X-Signature:", 1), []string{"--key", current.Encoded()}, ExitFailed,
			"invalid: missing header webhook-signature\n"},
		{"bad timestamp", strings.Replace(good, "Webhook-Timestamp: ", "Webhook-Timestamp: 0", 1), []string{"--key", current.Encoded()}, ExitFailed,
			"invalid: invalid webhook-timestamp: leading zero\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.stdin, append([]string{"verify"}, tc.args...)...)
			if r.code != tc.code || r.stdout != tc.out || r.stderr != "" {
				t.Errorf("exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q", r.code, r.stdout, r.stderr, tc.code, tc.out)
			}
		})
	}

	r := run(t, "not http at all\n\n", "verify", "--key", current.Encoded())
	r.wantError(t, ExitError, "reading the captured request: line 1 is not a header", "request line, headers, a blank line, then the body")
	if strings.Contains(r.stderr, current.Encoded()) {
		t.Errorf("the key reached stderr")
	}
}
