// Package endpoint validates the URLs that subscriptions deliver to.
//
// The rules are those the WebhookSubscription schema enforces on spec.url at
// admission, so the controller (for API servers that could not check them)
// and the dispatcher (before it dials) apply exactly the same ones. Whether
// plain http is acceptable is the dispatcher's egress policy, decided at run
// time; that refusal is reported as ErrPlainHTTP so callers can tell it from
// a URL that can never work.
//
// Error messages never repeat the URL: it may carry a token in its query or
// credentials in its user info.
package endpoint

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxLength is the longest URL accepted, in characters.
const MaxLength = 2048

// ErrPlainHTTP is returned, wrapped, for an http:// URL when plain HTTP is
// not allowed. The URL is otherwise valid: allowing plain HTTP on the
// dispatcher makes it work.
var ErrPlainHTTP = errors.New("uses plain http, which the dispatcher's egress policy does not allow: use https, or set spec.egress.allowPlainHTTP on the dispatcher")

// ValidateURL reports why raw cannot be a delivery URL, or nil if it can.
// The URL must be at most MaxLength characters, parse, be absolute with the
// https scheme (or http when allowPlainHTTP), name a host, and carry neither
// user info nor a fragment. An http URL refused only because allowPlainHTTP
// is false yields an error wrapping ErrPlainHTTP.
func ValidateURL(raw string, allowPlainHTTP bool) error {
	// Length first, so that the rest of the work is bounded.
	if n := utf8.RuneCountInString(raw); n > MaxLength {
		return fmt.Errorf("is %d characters long, maximum is %d", n, MaxLength)
	}
	if raw == "" {
		return errors.New("is empty: an absolute URL such as https://example.com/hooks is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("is not a valid URL: %s", parseReason(err))
	}
	if !u.IsAbs() {
		return errors.New("must be an absolute URL such as https://example.com/hooks")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("must use the https or http scheme, not %s", schemeForMessage(u.Scheme))
	}
	// Mirrors the schema's pattern: anything between "//" and "@" in the
	// authority, even an empty user name, is user info.
	if u.User != nil {
		return errors.New("must not carry user info: put credentials in headers from a Secret")
	}
	if u.Hostname() == "" {
		return errors.New("must name a host")
	}
	// The schema refuses any '#', even an empty fragment that url.Parse
	// drops.
	if strings.Contains(raw, "#") {
		return errors.New("must not carry a fragment")
	}
	if u.Scheme == "http" && !allowPlainHTTP {
		return ErrPlainHTTP
	}
	return nil
}

// parseReason is url.Parse's complaint without the URL it quotes.
func parseReason(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return strings.TrimPrefix(err.Error(), "net/url: ")
}

// schemeForMessage quotes a scheme for an error message, cut short if long.
func schemeForMessage(s string) string {
	const maxShown = 32
	if len(s) > maxShown {
		return fmt.Sprintf("%q...", s[:maxShown])
	}
	return fmt.Sprintf("%q", s)
}
