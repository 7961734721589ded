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
	"net/netip"
	"net/url"
	"strconv"
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
// https scheme (or http when allowPlainHTTP), name a host that ValidateHost
// accepts, have a port (if any) from 1 to 65535, and carry neither user info
// nor a fragment. An http URL refused only because allowPlainHTTP
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
	// url.Parse decodes escapes in a host name ("%31" is "1"); the schema
	// refuses them, and so does this, outside an IPv6 literal's zone.
	auth := raw[len(u.Scheme)+len("://"):]
	if i := strings.IndexAny(auth, "/?#"); i >= 0 {
		auth = auth[:i]
	}
	if strings.Contains(auth, "%") && !strings.Contains(auth, "[") {
		return errors.New(MsgHostASCII)
	}
	if err := ValidateHost(u.Hostname()); err != nil {
		return err
	}
	if err := validatePort(u.Port()); err != nil {
		return err
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

// The words of the host and port rules; the CRD's CEL rules say the same.
const (
	// MsgHostASCII is the rule for host names.
	MsgHostASCII = "host must be an ASCII host name (write international names in punycode, xn--...) or an IP address: labels of letters, digits, '-' and '_', 1 to 63 characters each, 253 in all"
	// MsgHostCanonicalIP is the rule for hosts that are, or look like, IP
	// addresses.
	MsgHostCanonicalIP = "an IP address host must be written in canonical form, such as 192.0.2.1 or [2001:db8::1], without zone, leading zeros, or IPv4-mapped form"
	// MsgPort is the rule for ports.
	MsgPort = "port must be a number from 1 to 65535"
)

// ValidateHost reports why host (a URL's host name, without brackets or
// port) cannot be dialled as written, or nil if it can. Host names must be
// ASCII: Go's resolver and HTTP client map Unicode digits and full stops
// (full-width "１２７．０．０．１", the ideographic full stop) to ASCII, so a
// host that looks like a name could reach a loopback or private address
// that a configuration check never saw. A name whose last label is a
// number is read as an IPv4 address by resolvers and browsers ("127.1",
// "0x7f.1", "2130706433"), so only the canonical dotted form of an address
// is accepted.
func ValidateHost(host string) error {
	if addr, err := netip.ParseAddr(host); err == nil {
		if addr.Zone() != "" || addr.Is4In6() || addr.String() != host {
			return errors.New(MsgHostCanonicalIP)
		}
		return nil
	}
	if len(host) > 253 {
		return errors.New(MsgHostASCII)
	}
	name := strings.TrimSuffix(host, ".")
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return errors.New(MsgHostASCII)
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return errors.New(MsgHostASCII)
			}
		}
	}
	if numericLabel(labels[len(labels)-1]) {
		return errors.New(MsgHostCanonicalIP)
	}
	return nil
}

// numericLabel says whether a resolver would read l as (part of) an IPv4
// address: decimal digits, or 0x with hexadecimal digits.
func numericLabel(l string) bool {
	digits := l
	hex := false
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		digits, hex = l[2:], true
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		switch {
		case '0' <= c && c <= '9':
		case hex && ('a' <= c && c <= 'f' || 'A' <= c && c <= 'F'):
		default:
			return false
		}
	}
	return hex || digits != ""
}

// validatePort checks the port of a URL, "" when it has none. url.Parse has
// already made sure it is decimal digits.
func validatePort(port string) error {
	if port == "" {
		return nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return errors.New(MsgPort)
	}
	return nil
}
