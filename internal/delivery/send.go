package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"
	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/rules"
	"github.com/hookline/hookline/internal/version"
)

// Class is the kind of failure of an attempt, as shown in a subscription's
// status (lastFailure.class) and in metric labels.
type Class string

// The failure classes. ClassNone is a success.
const (
	ClassNone Class = ""
	// ClassTimeout: the attempt's deadline passed before a response.
	ClassTimeout Class = "Timeout"
	// ClassConnection: refused, reset, DNS failure, EOF before a response.
	ClassConnection Class = "ConnectionError"
	// ClassTLS: TLS handshake or certificate verification failed.
	ClassTLS Class = "TLSError"
	// ClassHTTPStatus: the endpoint answered with a status that is neither
	// 2xx nor 3xx.
	ClassHTTPStatus Class = "HTTPStatus"
	// ClassRedirect: the endpoint answered 3xx, which is a failure and is
	// never followed.
	ClassRedirect Class = "Redirect"
	// ClassEgressDenied: the egress policy refused the address dialled.
	ClassEgressDenied Class = "EgressDenied"
	// ClassInvalidRequest: the request could not be built (bad URL, header,
	// data, or no signing key); retrying cannot help.
	ClassInvalidRequest Class = "InvalidRequest"
	// ClassAuth: the credentials could not be obtained, such as an OAuth2
	// token endpoint failing. A 401 or 403 from the endpoint itself is
	// ClassHTTPStatus.
	ClassAuth Class = "AuthError"
)

// Result is the outcome of one attempt.
type Result struct {
	// StatusCode is the HTTP status received, or 0 if none was.
	StatusCode int
	// Class is ClassNone on success, otherwise the kind of failure.
	Class Class
	// Message is a short human-readable account of the failure, such as
	// "HTTP 503: upstream busy". It never holds the URL, header values,
	// credentials or key material.
	Message string
	// RetryAfter is the delay asked for by Retry-After on a 429 or 503
	// answer, or 0 if absent, invalid or in the past.
	RetryAfter time.Duration
	// Latency is how long the attempt took, by the Sender's clock.
	Latency time.Duration
	// Success is true for a 2xx answer.
	Success bool
}

// DefaultMaxResponseBytes is how much of a response body a Sender reads
// when MaxResponseBytes is zero.
const DefaultMaxResponseBytes = 64 << 10

const (
	// snippetWindow is how much of the body is examined for the snippet.
	// It is wider than the snippet so that a header value echoed back near
	// the start is seen whole and redacted before the cut.
	snippetWindow = 1 << 10
	// MaxSnippetBytes bounds the response excerpt in a failure Message.
	MaxSnippetBytes = 256
	// maxMessageBytes bounds a whole failure Message.
	maxMessageBytes = 512
	// minRedactedLength: shorter header values are not redacted from
	// snippets, because they would match ordinary text everywhere.
	minRedactedLength = 4
	redacted          = "[redacted]"
)

// Sender makes delivery attempts. Its fields are read-only once it is in
// use; one Sender serves all subscriptions concurrently.
type Sender struct {
	// Client sends the requests of targets without a Client of their own;
	// nil means a client from NewClient with default options. It should
	// not follow redirects.
	Client *http.Client
	// Clock stamps webhook-timestamp and measures latency; nil means the
	// real clock.
	Clock clock.PassiveClock
	// UserAgent is sent as user-agent; empty means DefaultUserAgent().
	UserAgent string
	// MaxResponseBytes is how much of a response body is read (and
	// discarded) at most; zero means DefaultMaxResponseBytes.
	MaxResponseBytes int64
}

// DefaultUserAgent is the user-agent of this build.
func DefaultUserAgent() string {
	return "Hookline/" + version.Version + " (+https://hookline.dev)"
}

var defaultClient = sync.OnceValue(func() *http.Client { return NewClient(ClientOptions{}) })

// Send makes one attempt to deliver m to t: a POST of Body(m), or of
// m.Encoded when set, with the headers webhook-id (m.ID), webhook-timestamp
// (the clock's current Unix seconds), webhook-signature (one entry per key
// in t.Keys, space-separated), content-type application/json and
// user-agent. t.Header is added, except any webhook-* header, content-type,
// user-agent and the headers that frame the connection (host,
// content-length, connection, ...), which are silently left out so they
// cannot override the sender's own. Then t.Auth, if any, adds its
// credentials.
//
// The request goes through t.Client, or the Sender's Client when that is
// nil. If the endpoint answers 401 and t.Auth.Refresh says a retry could
// help, the same request (same webhook-id, body and signatures) is sent
// once more at once, and the Result is that second answer's.
//
// The attempt, including fetching a token, the retry, and reading up to
// MaxResponseBytes of the response, is bounded by t.Timeout. Redirects are
// never followed. If ctx itself is canceled the Result is a
// ClassConnection failure: callers shutting down should check ctx.Err()
// before counting it as an attempt.
func (s *Sender) Send(ctx context.Context, t Target, m Message) Result {
	clk := s.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	start := clk.Now()
	r := s.send(ctx, t, m, start)
	r.Latency = clk.Since(start)
	return r
}

func (s *Sender) send(ctx context.Context, t Target, m Message, now time.Time) Result {
	body := m.Encoded
	if body == nil {
		var err error
		if body, err = Body(m); err != nil {
			return invalid(err.Error())
		}
	}
	if msg := checkURL(t.URL); msg != "" {
		return invalid(msg)
	}
	if msg := checkHeader(t.Header); msg != "" {
		return invalid(msg)
	}
	timestamp := now.Unix()
	sigs := make([]string, 0, len(t.Keys))
	for _, k := range t.Keys {
		if sig := k.Sign(m.ID, timestamp, body); sig != "" {
			sigs = append(sigs, sig)
		}
	}
	if len(sigs) == 0 {
		// An unsigned delivery would be refused by every receiver that
		// checks, and accepted by those that do not: neither is wanted.
		return invalid("no signing key")
	}

	timeout := attemptTimeout(t)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	ua := s.userAgent()
	build := func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		addStaticHeader(req, t.Header)
		req.Header.Set("Webhook-Id", m.ID)
		req.Header.Set("Webhook-Timestamp", strconv.FormatInt(timestamp, 10))
		req.Header.Set("Webhook-Signature", strings.Join(sigs, " "))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", ua)
		return req, nil
	}
	rep, failed := s.exchange(ctx, t, timeout, build)
	if failed.Class != ClassNone {
		return failed
	}

	r := Result{StatusCode: rep.status}
	switch code := rep.status; {
	case code >= 200 && code < 300:
		r.Success = true
		return r
	case code >= 300 && code < 400:
		r.Class = ClassRedirect
		r.Message = fmt.Sprintf("HTTP %d: redirect not followed", code)
		return r
	default:
		r.Class = ClassHTTPStatus
	}
	r.Message = statusMessage(rep)
	if rep.status == http.StatusTooManyRequests || rep.status == http.StatusServiceUnavailable {
		r.RetryAfter = parseRetryAfter(rep.header.Get("Retry-After"), now)
	}
	return r
}

func attemptTimeout(t Target) time.Duration {
	if t.Timeout <= 0 {
		return DefaultTimeout
	}
	return t.Timeout
}

func (s *Sender) userAgent() string {
	if s.UserAgent == "" {
		return DefaultUserAgent()
	}
	return s.UserAgent
}

// client is the HTTP client for t: its own, else the Sender's.
func (s *Sender) client(t Target) *http.Client {
	switch {
	case t.Client != nil:
		return t.Client
	case s.Client != nil:
		return s.Client
	default:
		return defaultClient()
	}
}

// addStaticHeader copies a target's static headers onto req, leaving out
// those the sender owns.
func addStaticHeader(req *http.Request, h http.Header) {
	for name, values := range h {
		name = http.CanonicalHeaderKey(name)
		if reservedHeader(name) {
			continue
		}
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
}

// reply is what an endpoint answered: its status, headers and the start
// of its body, with the values that must be redacted from that body.
type reply struct {
	status  int
	header  http.Header
	head    []byte
	secrets []string
}

// statusMessage explains a failed status with a redacted body snippet.
func statusMessage(rep reply) string {
	detail := snippet(rep.head, rep.secrets)
	if detail == "" {
		detail = http.StatusText(rep.status)
	}
	return truncate(strings.TrimSuffix(fmt.Sprintf("HTTP %d: %s", rep.status, detail), ": "), maxMessageBytes)
}

// exchange sends the request that build makes, with t.Auth's credentials,
// through t's client, and reads the start of the answer. After a 401 it
// asks t.Auth to refresh and, if that could help, sends a fresh copy once
// more. When no answer comes, the returned Result holds the failure.
func (s *Sender) exchange(ctx context.Context, t Target, timeout time.Duration, build func() (*http.Request, error)) (reply, Result) {
	client := s.client(t)
	for try := 1; ; try++ {
		req, err := build()
		if err != nil {
			// The error would quote the URL.
			return reply{}, invalid("could not build the request")
		}
		secrets := headerValues(t.Header)
		if t.Auth != nil {
			before := req.Header.Clone()
			err := t.Auth.Authenticate(ctx, req)
			secrets = append(secrets, authSecrets(t.Auth)...)
			if err != nil {
				class, msg := authFailure(err, secrets)
				return reply{}, Result{Class: class, Message: msg}
			}
			secrets = append(secrets, addedValues(before, req.Header)...)
			if msg := checkHeader(req.Header); msg != "" {
				return reply{}, invalid("credentials: " + msg)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			class, msg := classify(err, timeout, clientCertOf(client))
			return reply{}, Result{Class: class, Message: msg}
		}
		rep := reply{status: resp.StatusCode, header: resp.Header, head: s.drain(resp), secrets: secrets}
		if rep.status == http.StatusUnauthorized && try == 1 && t.Auth != nil && t.Auth.Refresh() {
			continue
		}
		return rep, Result{}
	}
}

// drain reads the start of a response body for a snippet, discards the
// rest up to MaxResponseBytes, and closes it.
func (s *Sender) drain(resp *http.Response) []byte {
	defer func() { _ = resp.Body.Close() }()
	limit := s.MaxResponseBytes
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	// Read errors are deliberately ignored: the status has already decided
	// the outcome, and the body is only read so the connection can be
	// reused and a failure can be explained.
	limited := io.LimitReader(resp.Body, limit)
	head, _ := io.ReadAll(io.LimitReader(limited, snippetWindow))
	_, _ = io.Copy(io.Discard, limited)
	return head
}

// headerValues lists every value of h: static headers may come from
// Secrets, so an endpoint echoing one back must not have it shown.
func headerValues(h http.Header) []string {
	var out []string
	for _, values := range h {
		out = append(out, values...)
	}
	return out
}

// addedValues lists the header values in after that before lacks: those
// an Authenticator set.
func addedValues(before, after http.Header) []string {
	var out []string
	for name, values := range after {
		for _, v := range values {
			if !slices.Contains(before[name], v) {
				out = append(out, v)
			}
		}
	}
	return out
}

// secretHolder is implemented by the Authenticators of this package that
// know secrets beyond the header values they set, such as a password,
// which an endpoint might echo back decoded.
type secretHolder interface {
	secretValues() []string
}

func authSecrets(a Authenticator) []string {
	if h, ok := a.(secretHolder); ok {
		return h.secretValues()
	}
	return nil
}

// authFailure classifies an Authenticator's error. A refused egress keeps
// its class, as retrying cannot help either; a canceled context is the
// caller giving up, not the credentials failing.
func authFailure(err error, secrets []string) (Class, string) {
	switch {
	case errors.Is(err, ErrEgressDenied):
		return ClassEgressDenied, truncate(redact(err.Error(), secrets), maxMessageBytes)
	case errors.Is(err, context.Canceled):
		return ClassConnection, "request canceled"
	default:
		return ClassAuth, truncate(redact(err.Error(), secrets), maxMessageBytes)
	}
}

func invalid(msg string) Result {
	return Result{Class: ClassInvalidRequest, Message: truncate(msg, maxMessageBytes)}
}

// checkURL returns why raw cannot be requested, without quoting it.
func checkURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "invalid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "URL scheme must be http or https"
	case u.Host == "":
		return "URL has no host"
	}
	return ""
}

// checkHeader returns why a static header cannot be sent, naming the
// header but never showing its value.
func checkHeader(h http.Header) string {
	for name, values := range h {
		if !validHeaderName(name) {
			return fmt.Sprintf("header name %q is invalid", truncate(name, 64))
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return fmt.Sprintf("header %s has an invalid value", name)
			}
		}
	}
	return ""
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool { return httpguts.ValidHeaderFieldName(s) }

// validHeaderValue refuses control characters other than tab, which could
// end the header early and inject others.
func validHeaderValue(s string) bool { return httpguts.ValidHeaderFieldValue(s) }

// reservedHeader says whether the sender owns a header: the one list of
// internal/rules, which the CRD and the controller refuse too.
func reservedHeader(canonical string) bool {
	return rules.IsReservedHeader(canonical)
}

// classify turns a transport error into a class and a message. The
// url.Error wrapper is dropped because its text quotes the URL.
func classify(err error, timeout time.Duration, cert clientCert) (Class, string) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := truncate(err.Error(), maxMessageBytes)
	var netErr net.Error
	switch {
	case errors.Is(err, ErrEgressDenied):
		return ClassEgressDenied, msg
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout, fmt.Sprintf("no response within %s", timeout)
	case errors.As(err, &netErr) && netErr.Timeout():
		return ClassTimeout, msg
	case errors.Is(err, context.Canceled):
		return ClassConnection, "request canceled"
	}
	if tlsMsg, ok := tlsFailure(err, cert); ok {
		return ClassTLS, truncate(tlsMsg, maxMessageBytes)
	}
	return ClassConnection, msg
}

// clientCert says whether a client presents a certificate, so that a
// server's refusal can be explained: it wants one, or it refused ours.
type clientCert int

const (
	clientCertUnknown clientCert = iota
	clientCertNone
	clientCertPresented
)

func clientCertOf(c *http.Client) clientCert {
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		return clientCertUnknown
	}
	if cfg := tr.TLSClientConfig; cfg != nil && (len(cfg.Certificates) > 0 || cfg.GetClientCertificate != nil) {
		return clientCertPresented
	}
	return clientCertNone
}

// Alerts a server sends when it does not accept the client certificate
// it was given (or, before TLS 1.3, the lack of one).
// The keys are crypto/tls's names for them.
var clientCertAlerts = map[string]bool{
	"bad certificate":               true,
	"unsupported certificate":       true,
	"revoked certificate":           true,
	"expired certificate":           true,
	"unknown certificate":           true,
	"unknown certificate authority": true,
}

// tlsFailure explains a TLS error in words an operator can act on, and
// reports whether err is one. x509's own detail is kept where it helps
// (which names a certificate covers, when it expired); it never holds the
// URL.
func tlsFailure(err error, cert clientCert) (string, bool) {
	var (
		hostErr    x509.HostnameError
		unknownCA  x509.UnknownAuthorityError
		invalidErr x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
		alertErr   tls.AlertError
		opErr      *net.OpError
	)
	switch {
	case errors.As(err, &hostErr):
		return "TLS: certificate is not valid for this host name: " + strings.TrimPrefix(hostErr.Error(), "x509: "), true
	case errors.As(err, &unknownCA):
		// x509 appends which candidate failed and why; the point for the
		// operator is the missing CA.
		return "TLS: certificate signed by unknown authority", true
	case errors.As(err, &invalidErr) && invalidErr.Reason == x509.Expired:
		msg := "TLS: certificate has expired or is not yet valid"
		if invalidErr.Detail != "" {
			msg += ": " + invalidErr.Detail
		}
		return msg, true
	case errors.As(err, &invalidErr):
		return "TLS: certificate is invalid: " + strings.TrimPrefix(invalidErr.Error(), "x509: "), true
	case errors.As(err, &verifyErr):
		return "TLS: certificate verification failed: " + strings.TrimPrefix(verifyErr.Err.Error(), "x509: "), true
	case errors.As(err, &recordErr):
		return "TLS handshake failed: the server does not speak TLS", true
	case errors.Is(err, http.ErrSchemeMismatch):
		return "TLS handshake failed: the server answered in plain HTTP", true
	case errors.As(err, &alertErr):
		return "TLS handshake failed: " + strings.TrimPrefix(alertErr.Error(), "tls: "), true
	}
	// Alerts sent by the peer surface as an unexported type inside a
	// "remote error"; their text is all there is to go on.
	msg := err.Error()
	alert, remote := "", false
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		alert, remote = strings.TrimPrefix(opErr.Err.Error(), "tls: "), true
	} else if _, after, ok := strings.Cut(msg, "remote error: tls: "); ok {
		alert, remote = after, true
	}
	if remote {
		switch {
		case alert == "certificate required" && cert == clientCertPresented:
			// A client offers its certificate only if it comes from one
			// of the CAs the server names as acceptable.
			return "TLS: the server requires a client certificate from a CA it accepts, which the configured one is not", true
		case alert == "certificate required":
			return "TLS: the server requires a client certificate", true
		case clientCertAlerts[alert] && cert == clientCertNone:
			// Before TLS 1.3 a server without the certificate it
			// requires answers bad_certificate.
			return "TLS: the server requires a client certificate (remote alert: " + alert + ")", true
		case clientCertAlerts[alert] && cert == clientCertPresented:
			return "TLS: the server refused the client certificate (remote alert: " + alert + ")", true
		case clientCertAlerts[alert]:
			return "TLS: the server refused the client certificate or requires one (remote alert: " + alert + ")", true
		default:
			return "TLS handshake failed: remote alert: " + alert, true
		}
	}
	if strings.Contains(msg, "tls: ") {
		return "TLS handshake failed: " + msg, true
	}
	return "", false
}

// snippet makes a short printable excerpt of a response body for a failure
// message, with any secret the endpoint may have echoed back replaced:
// static header values (they can come from Secrets) and credentials.
func snippet(head []byte, secrets []string) string {
	// Redact on the raw bytes, before anything is rewritten, so a value is
	// found exactly as the endpoint echoed it, whatever bytes it holds.
	s := redact(string(head), secrets)
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	return truncate(strings.Join(strings.Fields(s), " "), MaxSnippetBytes)
}

// redact replaces every secret of at least minRedactedLength bytes in s,
// longest first so that a value containing another goes whole.
func redact(s string, secrets []string) string {
	if len(secrets) == 0 {
		return s
	}
	sorted := slices.Clone(secrets)
	slices.SortFunc(sorted, func(a, b string) int { return len(b) - len(a) })
	for _, v := range sorted {
		if len(v) >= minRedactedLength {
			s = strings.ReplaceAll(s, v, redacted)
		}
	}
	return s
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "..."
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// maxRetryAfterSeconds keeps a huge Retry-After from overflowing a
// time.Duration; the policy caps it much lower anyway.
const maxRetryAfterSeconds = math.MaxInt64 / int64(time.Second)

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date
// (relative to now). It returns 0 for anything absent, invalid or past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if isDigits(v) {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > maxRetryAfterSeconds {
			// Only overflow can fail here.
			secs = maxRetryAfterSeconds
		}
		return time.Duration(secs) * time.Second
	}
	when, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := when.Sub(now); d > 0 {
		return d
	}
	return 0
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
