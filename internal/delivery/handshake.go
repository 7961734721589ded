package delivery

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// HandshakeResult is the outcome of an endpoint validation handshake.
type HandshakeResult struct {
	// Allowed is true when the endpoint granted deliveries from the
	// origin.
	Allowed bool
	// Rate is the WebHook-Allowed-Rate granted, in requests per minute:
	// 0 when none was given (or it was invalid), -1 for "*" (no limit).
	Rate int
	// Message says why the handshake was refused, or notes an invalid
	// rate. It is short and never holds the URL or credentials.
	Message string
	// StatusCode is the HTTP status received, or 0 if none was.
	StatusCode int
	// Class is the kind of failure when no usable answer came (a
	// connection, TLS, credentials or redirect failure, or a non-2xx
	// status); ClassNone when the endpoint answered 2xx, whether it
	// granted or not.
	Class Class
}

// Handshake asks the endpoint of t whether it accepts deliveries from
// origin, as the abuse protection of the CloudEvents HTTP webhook
// specification (section 4) describes: an OPTIONS request to t.URL with
// WebHook-Request-Origin, and WebHook-Request-Rate when requestedRate is
// positive, plus t's static headers and credentials (an endpoint behind
// credentials needs them), through t's client, bounded by t.Timeout. The
// endpoint grants by answering 2xx with WebHook-Allowed-Origin equal to
// origin (compared without case, as host names are) or "*".
//
// Only the synchronous form is supported: no WebHook-Request-Callback is
// offered, so an endpoint that would grant later through a callback is
// reported as not granting. Redirects are not followed.
func (s *Sender) Handshake(ctx context.Context, t Target, origin string, requestedRate int) HandshakeResult {
	if msg := checkURL(t.URL); msg != "" {
		return HandshakeResult{Class: ClassInvalidRequest, Message: msg}
	}
	if msg := checkHeader(t.Header); msg != "" {
		return HandshakeResult{Class: ClassInvalidRequest, Message: msg}
	}
	if origin == "" || !validHeaderValue(origin) {
		return HandshakeResult{Class: ClassInvalidRequest, Message: "the origin is empty or not a valid header value"}
	}

	timeout := attemptTimeout(t)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	ua := s.userAgent()
	build := func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodOptions, t.URL, nil)
		if err != nil {
			return nil, err
		}
		addStaticHeader(req, t.Header)
		req.Header.Set("WebHook-Request-Origin", origin)
		if requestedRate > 0 {
			req.Header.Set("WebHook-Request-Rate", strconv.Itoa(requestedRate))
		}
		req.Header.Set("User-Agent", ua)
		return req, nil
	}
	rep, failed := s.exchange(ctx, t, timeout, build)
	if failed.Class != ClassNone {
		return HandshakeResult{Class: failed.Class, Message: failed.Message}
	}
	return interpretHandshake(rep, origin)
}

// interpretHandshake reads the endpoint's answer to the handshake.
func interpretHandshake(rep reply, origin string) HandshakeResult {
	r := HandshakeResult{StatusCode: rep.status}
	switch code := rep.status; {
	case code >= 300 && code < 400:
		r.Class = ClassRedirect
		r.Message = fmt.Sprintf("HTTP %d: redirect not followed", code)
		return r
	case code == http.StatusMethodNotAllowed:
		r.Class = ClassHTTPStatus
		r.Message = "HTTP 405: the endpoint does not support the validation handshake (OPTIONS)"
		return r
	case code < 200 || code >= 300:
		r.Class = ClassHTTPStatus
		r.Message = statusMessage(rep)
		return r
	}

	allowed := strings.TrimSpace(rep.header.Get("WebHook-Allowed-Origin"))
	switch {
	case allowed == "":
		// Also what an endpoint that grants by callback answers.
		r.Message = "the endpoint did not grant deliveries: no WebHook-Allowed-Origin in its answer"
		return r
	case allowed != "*" && !strings.EqualFold(allowed, origin):
		shown := strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return ' '
			}
			return r
		}, redact(allowed, rep.secrets))
		r.Message = fmt.Sprintf("the endpoint granted deliveries to origin %q, not %q", truncate(shown, 64), truncate(origin, 64))
		return r
	}
	r.Allowed = true
	rate, ok := parseAllowedRate(rep.header.Get("WebHook-Allowed-Rate"))
	r.Rate = rate
	if !ok {
		r.Message = "ignored an invalid WebHook-Allowed-Rate: not a positive integer or \"*\""
	}
	return r
}

// parseAllowedRate reads WebHook-Allowed-Rate: a positive integer of
// requests per minute, or "*" for no limit (-1). An absent value is 0 and
// ok; anything else is 0 and not ok.
func parseAllowedRate(v string) (rate int, ok bool) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return 0, true
	case v == "*":
		return -1, true
	case !isDigits(v):
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
