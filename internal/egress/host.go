package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/hookline/hookline/internal/delivery"
)

// ParseHost reads host as an IP address in every spelling that a URL parser
// or a C resolver might turn into one: the dotted quad; the inet_aton forms,
// whose parts may be decimal ("2130706433"), octal with a leading zero
// ("0177.0.0.1") or hexadecimal ("0x7f.0.0.1") and may be fewer than four
// ("127.1", "127.0.1"), mixed freely; a single trailing dot ("127.0.0.1.");
// IPv6, bare or in brackets ("[::1]"), with or without a zone ("fe80::1%eth0",
// "[fe80::1%25eth0]"). The zone is kept. ok is false for anything else,
// which is a host name (or not a host at all); addr is then the zero Addr.
func ParseHost(host string) (addr netip.Addr, ok bool) {
	addr, _, ok = parseHost(host)
	return addr, ok
}

// parseHost is ParseHost that also says whether host is written the one
// usual way: a dotted quad of plain decimals, or IPv6.
func parseHost(host string) (addr netip.Addr, canonical, ok bool) {
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		inner := host[1 : len(host)-1]
		// Brackets are URL syntax, where RFC 6874 writes the zone's "%"
		// as "%25".
		a, ok := netip.Addr{}, false
		if i := strings.Index(inner, "%25"); i >= 0 {
			a, ok = parseIPv6(inner[:i] + "%" + inner[i+3:])
		}
		if !ok {
			a, ok = parseIPv6(inner)
		}
		if !ok {
			// A URL puts only IPv6 in brackets. IPv4 there is still read,
			// so that it is judged (and refused for its spelling) rather
			// than passed on as a name.
			if a4, _, ok4 := parseIPv4(inner); ok4 {
				return a4, false, true
			}
			return netip.Addr{}, false, false
		}
		return a, true, true
	}
	if strings.Contains(host, ":") {
		a, ok := parseIPv6(host)
		return a, ok, ok
	}
	return parseIPv4(host)
}

// parseIPv6 reads an IPv6 address. Zones are limited to what interface
// names and indexes are made of, so that a zone cannot smuggle URL syntax.
func parseIPv6(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || !validZone(a.Zone()) {
		return netip.Addr{}, false
	}
	return a, true
}

func validZone(z string) bool {
	for i := 0; i < len(z); i++ {
		c := z[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// parseIPv4 reads the inet_aton spellings of an IPv4 address. With fewer
// than four parts, the last one fills all the remaining bytes.
func parseIPv4(s string) (addr netip.Addr, canonical, ok bool) {
	canonical = true
	if strings.HasSuffix(s, ".") {
		s = s[:len(s)-1]
		canonical = false
	}
	if s == "" {
		return netip.Addr{}, false, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false, false
	}
	if len(parts) != 4 {
		canonical = false
	}
	var ip uint64
	for i, part := range parts {
		v, decimal, ok := parseIPv4Part(part)
		if !ok {
			return netip.Addr{}, false, false
		}
		canonical = canonical && decimal
		last := i == len(parts)-1
		limit := uint64(0xff)
		if last {
			limit = 1<<(8*(5-len(parts))) - 1
		}
		if v > limit {
			return netip.Addr{}, false, false
		}
		if last {
			ip |= v
		} else {
			ip |= v << (8 * (3 - i))
		}
	}
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), canonical, true
}

// parseIPv4Part reads one part: "0x" hexadecimal (an empty "0x" is 0, as
// for browsers), "0" octal, or decimal. decimal is true only for a plain
// decimal without a leading zero.
func parseIPv4Part(p string) (v uint64, decimal, ok bool) {
	base := uint64(10)
	digits := p
	switch {
	case len(p) >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'):
		base, digits = 16, p[2:]
		if digits == "" {
			return 0, false, true
		}
	case len(p) >= 2 && p[0] == '0':
		base, digits = 8, p[1:]
	case p == "":
		return 0, false, false
	}
	for i := 0; i < len(digits); i++ {
		d, ok := digitValue(digits[i])
		if !ok || d >= base {
			return 0, false, false
		}
		v = v*base + d
		// Stop before uint64 could overflow; anything this big is no IPv4.
		if v > 0xffffffff {
			return 0, false, false
		}
	}
	return v, base == 10, true
}

func digitValue(c byte) (uint64, bool) {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0'), true
	case c >= 'a' && c <= 'f':
		return uint64(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return uint64(c-'A') + 10, true
	}
	return 0, false
}

// looksNumeric reports whether a host that is no valid address still ends
// in a number, which browsers treat as a broken IPv4 address rather than a
// name. Such a host is refused instead of being handed to a resolver whose
// reading of it nobody can predict.
func looksNumeric(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		for i := 2; i < len(last); i++ {
			if _, ok := digitValue(last[i]); !ok {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

// checkHost applies the policy to a host that may be an address: addr is
// the address for a host that is one and the zero Addr for a name. hostPort
// is what a refusal names.
func (p *Policy) checkHost(host, hostPort string) (netip.Addr, error) {
	addr, canonical, ok := parseHost(host)
	if !ok {
		if looksNumeric(host) {
			return netip.Addr{}, &delivery.EgressDeniedError{Addr: hostPort, Reason: "host ends in a number but is not a valid IP address"}
		}
		return netip.Addr{}, nil
	}
	why := p.reason(addr)
	if !canonical {
		// Nothing legitimate needs "0x7f.1"; it only ever serves to slip an
		// address past a check that reads it differently.
		spelled := fmt.Sprintf("IP address %s written in a non-canonical form", addr)
		if why != "" {
			why = spelled + ": " + why
		} else {
			why = spelled
		}
	}
	if why != "" {
		return netip.Addr{}, &delivery.EgressDeniedError{Addr: hostPort, Reason: why}
	}
	return addr, nil
}

// CheckURL is the early check made when a URL is configured. An http or
// https URL whose host is an IP address, in any spelling ParseHost
// understands, is refused if the policy denies that address; a numeric host
// written any way but the plain dotted quad is refused even if the address
// is allowed. A host name passes: what it resolves to is judged when it is
// dialled. Refusals are *delivery.EgressDeniedError; a URL that does not
// parse, is not http(s) or has no host gets a plain error. No error quotes
// the URL's user info, path or query.
func (p *Policy) CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return errors.New("URL is not valid")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("URL scheme must be http or https")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("URL has no host")
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	_, err = p.checkHost(host, net.JoinHostPort(host, port))
	return err
}
