package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/pkg/receiver"
)

type verifyOptions struct {
	secret    string
	keys      []string
	tolerance time.Duration
	now       string
	file      string
}

func newVerifyCommand(a *app) *cobra.Command {
	o := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify (--secret WEBHOOKSECRET | --key KEY ...) [--tolerance 5m] [--now RFC3339] [-f FILE]",
		Short: "Verify the signature of a captured webhook request",
		Long: `Verify a captured webhook request the way a receiver does, with the
receiver SDK (github.com/hookline/hookline/pkg/receiver): the
webhook-id, webhook-timestamp and webhook-signature headers, the timestamp
within --tolerance of now, and a signature made with one of the keys.

The request is read as raw HTTP text from stdin or -f: the request line,
the headers, a blank line and the body exactly as received (CRLF or LF
line endings). The keys are those of a WebhookSecret, read through the API
from the Secret it owns (which needs get on that Secret), or given with
--key: "whsec_..." secrets, "whpk_..." Ed25519 public keys or "whsk_..."
private keys. --now verifies an old capture as of that time.

It prints "valid: ..." and exits 0, or "invalid: <reason>" and exits 3.`,
		Example: `  # Verify a request saved by a receiver, with the keys of the WebhookSecret orders-signing
  kubectl hookline verify -n shop --secret orders-signing -f request.http

  # Verify with a key at hand, as of the time the request was captured
  kubectl hookline verify --key "$WEBHOOK_SECRET" --now 2026-11-29T20:00:00Z < request.http`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.verify(cmd, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.secret, "secret", "", "WebhookSecret whose keys verify the request")
	fs.StringArrayVar(&o.keys, "key", nil, "A key that may have signed the request (repeatable): whsec_..., whpk_... or whsk_...")
	fs.DurationVar(&o.tolerance, "tolerance", receiver.DefaultTolerance, "How far webhook-timestamp may be from now")
	fs.StringVar(&o.now, "now", "", "Verify as of this RFC 3339 time instead of now, for an old capture")
	fs.StringVarP(&o.file, "filename", "f", "", "Read the captured request from this file instead of stdin")
	return cmd
}

func (a *app) verify(cmd *cobra.Command, o *verifyOptions) error {
	switch {
	case o.secret == "" && len(o.keys) == 0:
		return usageErrorf("pass the keys: --secret WEBHOOKSECRET, or --key whsec_... (repeatable)")
	case o.secret != "" && len(o.keys) > 0:
		return usageErrorf("pass --secret or --key, not both")
	case o.tolerance <= 0:
		return usageErrorf("--tolerance must be positive, for example --tolerance 5m")
	}
	now := a.clock.Now()
	if o.now != "" {
		t, err := time.Parse(time.RFC3339, o.now)
		if err != nil {
			return usageErrorf("--now %q is not an RFC 3339 time such as 2026-11-29T20:00:00Z", o.now)
		}
		now = t
	}
	var keys []receiver.Key
	for i, s := range o.keys {
		k, err := receiver.ParseKey(s)
		if err != nil {
			// The SDK's errors never quote the key.
			return usageErrorf("--key #%d: %v", i+1, err)
		}
		keys = appendKey(keys, k)
	}

	raw, err := a.readCapture(o.file)
	if err != nil {
		return err
	}
	req, err := parseCapture(raw)
	if err != nil {
		return fmt.Errorf("reading the captured request: %w; give the raw HTTP text: request line, headers, a blank line, then the body", err)
	}
	for _, w := range req.warnings {
		fmt.Fprintln(a.errOut, "warning: "+w)
	}

	if o.secret != "" {
		if keys, err = a.secretKeys(cmd.Context(), o.secret); err != nil {
			return err
		}
	}
	line, valid := verifyCapture(req, keys, o.tolerance, now)
	fmt.Fprintln(a.out, line)
	if !valid {
		return failed()
	}
	return nil
}

func (a *app) readCapture(file string) ([]byte, error) {
	if file != "" && file != "-" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading the captured request: %w", err)
		}
		return raw, nil
	}
	raw, err := io.ReadAll(a.in)
	if err != nil {
		return nil, fmt.Errorf("reading the captured request from stdin: %w", err)
	}
	return raw, nil
}

// secretKeys reads the keys of a WebhookSecret from the Secret it owns.
func (a *app) secretKeys(ctx context.Context, name string) ([]receiver.Key, error) {
	ns, err := a.namespace()
	if err != nil {
		return nil, err
	}
	hl, err := a.hooklineClient()
	if err != nil {
		return nil, err
	}
	ws, err := hl.webhookSecret(ctx, ns, name)
	if err != nil {
		return nil, apiError(err, "webhooksecret "+ns+"/"+name, "list them with kubectl get webhooksecrets -n "+ns)
	}
	secretName := ws.Status.SecretName
	if secretName == "" {
		secretName = ws.SigningSecretName()
	}
	kube, err := a.kubeClient()
	if err != nil {
		return nil, err
	}
	secret, err := kube.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
	switch {
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("forbidden: %s; reading the keys needs get on secret %s/%s, or pass them with --key", apiMessage(err), ns, secretName)
	case err != nil:
		return nil, apiError(err, "secret "+ns+"/"+secretName+" of webhooksecret "+ns+"/"+name,
			"the controller creates it: check kubectl describe webhooksecret "+name+" -n "+ns)
	}
	var keys []receiver.Key
	for _, field := range []string{
		hooklinev1.SecretKeySigningKey, hooklinev1.SecretKeyPreviousSigningKey,
		hooklinev1.SecretKeyPublicKey, hooklinev1.SecretKeyPreviousPublicKey,
	} {
		value, ok := secret.Data[field]
		if !ok {
			continue
		}
		k, err := receiver.ParseKey(string(value))
		if err != nil {
			return nil, fmt.Errorf("key %s of secret %s/%s: %w; check kubectl describe webhooksecret %s -n %s", field, ns, secretName, err, name, ns)
		}
		keys = appendKey(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("secret %s/%s holds no keys yet; check kubectl describe webhooksecret %s -n %s", ns, secretName, name, ns)
	}
	return keys, nil
}

// appendKey adds k unless a key with its ID is there: an Ed25519 private
// key and its public key are the same verifying key.
func appendKey(keys []receiver.Key, k receiver.Key) []receiver.Key {
	for _, have := range keys {
		if have.ID() == k.ID() {
			return keys
		}
	}
	return append(keys, k)
}

// capture is a request read from its raw HTTP text.
type capture struct {
	header   http.Header
	body     []byte
	warnings []string
}

// parseCapture reads raw HTTP request text: an optional request line,
// header lines, a blank line and the body. Lines may end with CRLF or LF.
// The body is kept byte for byte (the signature covers it), except that
// whitespace after Content-Length bytes, which editors and shells add, is
// dropped, and a chunked body is decoded.
func parseCapture(raw []byte) (capture, error) {
	head, body, found := splitHead(raw)
	c := capture{header: http.Header{}}
	lines := strings.Split(string(head), "\n")
	for i := range lines {
		lines[i] = strings.TrimSuffix(lines[i], "\r")
	}
	if len(lines) > 0 && isRequestLine(lines[0]) {
		lines = lines[1:]
	}
	var last string
	for i, line := range lines {
		switch {
		case line == "":
			continue
		case line[0] == ' ' || line[0] == '\t':
			// An obsolete folded continuation of the previous header.
			if last == "" {
				return capture{}, fmt.Errorf("line %d continues no header", i+1)
			}
			vals := c.header[last]
			vals[len(vals)-1] += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return capture{}, fmt.Errorf("line %d is not a header (Name: value)", i+1)
		}
		last = textproto.CanonicalMIMEHeaderKey(name)
		c.header.Add(last, strings.TrimSpace(value))
	}
	if len(c.header) == 0 {
		return capture{}, errors.New("no headers found")
	}
	if !found {
		c.warnings = append(c.warnings, "no blank line after the headers: verifying with an empty body")
	}

	if strings.EqualFold(c.header.Get("Transfer-Encoding"), "chunked") {
		decoded, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(body)))
		if err != nil {
			return capture{}, fmt.Errorf("decoding the chunked body: %w", err)
		}
		c.body = decoded
		return c, nil
	}
	c.body = body
	if cl := c.header.Get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		switch {
		case err != nil || n < 0:
			c.warnings = append(c.warnings, fmt.Sprintf("Content-Length %q is not a length: verifying the %d bytes after the headers", cl, len(body)))
		case len(body) > n && len(bytes.TrimSpace(body[n:])) == 0:
			c.body = body[:n]
		case len(body) != n:
			c.warnings = append(c.warnings, fmt.Sprintf("the body is %d bytes but Content-Length says %d: verifying the %d bytes given", len(body), n, len(body)))
		}
	}
	return c, nil
}

// splitHead splits at the first blank line, whichever line ending it uses.
func splitHead(raw []byte) (head, body []byte, found bool) {
	crlf := bytes.Index(raw, []byte("\r\n\r\n"))
	lf := bytes.Index(raw, []byte("\n\n"))
	// "\n\r\n" ends a head of LF lines followed by a CRLF blank line.
	mixed := bytes.Index(raw, []byte("\n\r\n"))
	best, size := -1, 0
	for _, cand := range []struct{ at, size int }{{crlf, 4}, {lf, 2}, {mixed, 3}} {
		if cand.at >= 0 && (best < 0 || cand.at < best) {
			best, size = cand.at, cand.size
		}
	}
	if best < 0 {
		return raw, nil, false
	}
	return raw[:best], raw[best+size:], true
}

// isRequestLine recognises "METHOD TARGET HTTP/x.y".
func isRequestLine(line string) bool {
	fields := strings.Fields(line)
	return len(fields) == 3 && strings.HasPrefix(fields[2], "HTTP/") && !strings.Contains(fields[0], ":")
}

// verifyCapture verifies req as of now and returns the line to print and
// whether the request is valid.
func verifyCapture(req capture, keys []receiver.Key, tolerance time.Duration, now time.Time) (string, bool) {
	v := receiver.Verifier{Tolerance: tolerance, Now: func() time.Time { return now }}
	err := v.Verify(req.header, req.body, keys)
	if err == nil {
		// The SDK says that a key matched, not which: ask each alone.
		var signers []string
		for _, k := range keys {
			if v.Verify(req.header, req.body, []receiver.Key{k}) == nil {
				signers = append(signers, k.ID())
			}
		}
		return fmt.Sprintf("valid: signed by %s (webhook-id %s, %s)", strings.Join(signers, " and "),
			req.header.Get(receiver.HeaderID), timestampAge(req.header.Get(receiver.HeaderTimestamp), now)), true
	}
	return "invalid: " + invalidReason(err, req.header, keys, tolerance, now), false
}

// invalidReason words a verification error of the SDK for people.
func invalidReason(err error, header http.Header, keys []receiver.Key, tolerance time.Duration, now time.Time) string {
	ts := func() time.Time {
		secs, _ := strconv.ParseInt(header.Get(receiver.HeaderTimestamp), 10, 64)
		return time.Unix(secs, 0)
	}
	switch {
	case errors.Is(err, receiver.ErrWrongKeyKind):
		// The SDK's message names the kinds: "the request is signed with
		// Ed25519 (v1a), the keys given are HMAC-SHA256".
		_, detail, _ := strings.Cut(err.Error(), receiver.ErrWrongKeyKind.Error()+": ")
		return fmt.Sprintf("the keys given are of the wrong kind for the signatures present: %s; pass the key that signs them (--key whpk_... for Ed25519, whsec_... for HMAC-SHA256, or --secret WEBHOOKSECRET)", detail)
	case errors.Is(err, receiver.ErrNoMatchingSignature):
		ids := make([]string, 0, len(keys))
		for _, k := range keys {
			ids = append(ids, k.ID())
		}
		return fmt.Sprintf("no signature matches the keys given (tried %s)", strings.Join(ids, ", "))
	case errors.Is(err, receiver.ErrTooOld):
		return fmt.Sprintf("timestamp %s too old (tolerance %s)", shortDuration(now.Sub(ts())), shortDuration(tolerance))
	case errors.Is(err, receiver.ErrTooNew):
		return fmt.Sprintf("timestamp %s in the future (tolerance %s)", shortDuration(ts().Sub(now)), shortDuration(tolerance))
	case errors.Is(err, receiver.ErrMissingHeader):
		for _, h := range []string{receiver.HeaderID, receiver.HeaderTimestamp, receiver.HeaderSignature} {
			if header.Get(h) == "" {
				return "missing header " + h
			}
		}
	case errors.Is(err, receiver.ErrNoKeys):
		return "no usable key given"
	}
	return strings.TrimPrefix(err.Error(), "verify webhook: ")
}

// timestampAge says how old webhook-timestamp is, as "3s old".
func timestampAge(ts string, now time.Time) string {
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "timestamp " + ts
	}
	d := now.Sub(time.Unix(secs, 0))
	if d < 0 {
		return shortDuration(-d) + " in the future"
	}
	return shortDuration(d) + " old"
}

// shortDuration prints whole seconds without zero units: "5m", "7m12s",
// "1h", "0s".
func shortDuration(d time.Duration) string {
	s := d.Truncate(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
