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
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/utils/clock"

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
)

// Result is the outcome of one attempt.
type Result struct {
	// StatusCode is the HTTP status received, or 0 if none was.
	StatusCode int
	// Class is ClassNone on success, otherwise the kind of failure.
	Class Class
	// Message is a short human-readable account of the failure, such as
	// "HTTP 503: upstream busy". It never holds the URL, header values or
	// key material.
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
	// Client sends the requests; nil means a client from NewClient with
	// default options. It should not follow redirects.
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

// Send makes one attempt to deliver m to t: a POST of Body(m) with the
// headers webhook-id (m.ID), webhook-timestamp (the clock's current Unix
// seconds), webhook-signature (one entry per key in t.Keys, space-separated),
// content-type application/json and user-agent. t.Header is added, except
// any webhook-* header, content-type, user-agent and the headers that frame
// the connection (host, content-length, connection, ...), which are
// silently left out so they cannot override the sender's own.
//
// The attempt, including reading up to MaxResponseBytes of the response,
// is bounded by t.Timeout. Redirects are never followed. If ctx itself is
// canceled the Result is a ClassConnection failure: callers shutting down
// should check ctx.Err() before counting it as an attempt.
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
	body, err := Body(m)
	if err != nil {
		return invalid(err.Error())
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

	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		// The error would quote the URL.
		return invalid("could not build the request")
	}
	for name, values := range t.Header {
		name = http.CanonicalHeaderKey(name)
		if reservedHeader(name) {
			continue
		}
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
	ua := s.UserAgent
	if ua == "" {
		ua = DefaultUserAgent()
	}
	req.Header.Set("Webhook-Id", m.ID)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(timestamp, 10))
	req.Header.Set("Webhook-Signature", strings.Join(sigs, " "))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", ua)

	client := s.Client
	if client == nil {
		client = defaultClient()
	}
	resp, err := client.Do(req)
	if err != nil {
		class, msg := classify(err, timeout)
		return Result{Class: class, Message: msg}
	}
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

	r := Result{StatusCode: resp.StatusCode}
	switch code := resp.StatusCode; {
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
	detail := snippet(head, t.Header)
	if detail == "" {
		detail = http.StatusText(resp.StatusCode)
	}
	r.Message = truncate(strings.TrimSuffix(fmt.Sprintf("HTTP %d: %s", resp.StatusCode, detail), ": "), maxMessageBytes)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		r.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return r
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
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters other than tab, which could
// end the header early and inject others.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// framingHeaders describe the connection or the message framing, which
// the transport owns; HTTP/2 even refuses some of them.
var framingHeaders = map[string]bool{
	"Host":              true,
	"Content-Length":    true,
	"Transfer-Encoding": true,
	"Connection":        true,
	"Keep-Alive":        true,
	"Proxy-Connection":  true,
	"Te":                true,
	"Trailer":           true,
	"Upgrade":           true,
}

func reservedHeader(canonical string) bool {
	return strings.HasPrefix(canonical, "Webhook-") ||
		canonical == "Content-Type" ||
		canonical == "User-Agent" ||
		framingHeaders[canonical]
}

// classify turns a transport error into a class and a message. The
// url.Error wrapper is dropped because its text quotes the URL.
func classify(err error, timeout time.Duration) (Class, string) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := truncate(err.Error(), maxMessageBytes)
	var (
		netErr     net.Error
		verifyErr  *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		recordErr  tls.RecordHeaderError
		alertErr   tls.AlertError
		opErr      *net.OpError
	)
	switch {
	case errors.Is(err, ErrEgressDenied):
		return ClassEgressDenied, msg
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout, fmt.Sprintf("no response within %s", timeout)
	case errors.As(err, &netErr) && netErr.Timeout():
		return ClassTimeout, msg
	case errors.Is(err, context.Canceled):
		return ClassConnection, "request canceled"
	case errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &invalidErr), errors.As(err, &recordErr), errors.As(err, &alertErr),
		errors.Is(err, http.ErrSchemeMismatch):
		return ClassTLS, msg
	case errors.As(err, &opErr) && opErr.Op == "remote error", strings.Contains(msg, "tls: "):
		// Alerts sent by the peer (such as protocol_version) surface as
		// an unexported type inside a "remote error"; the text is the
		// fallback sign of TLS.
		return ClassTLS, msg
	default:
		return ClassConnection, msg
	}
}

// snippet makes a short printable excerpt of a response body for a failure
// message, with any static header value the endpoint may have echoed back
// replaced, since those can come from Secrets.
func snippet(head []byte, header http.Header) string {
	// Redact on the raw bytes, before anything is rewritten, so a value is
	// found exactly as the endpoint echoed it, whatever bytes it holds.
	s := string(head)
	for _, values := range header {
		for _, v := range values {
			if len(v) >= minRedactedLength {
				s = strings.ReplaceAll(s, v, redacted)
			}
		}
	}
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	return truncate(strings.Join(strings.Fields(s), " "), MaxSnippetBytes)
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
