package egress

import (
	"fmt"
	"net/netip"

	"github.com/hookline/hookline/internal/delivery"
)

// Reasons given for refusals that are not one of the default ranges.
const (
	reasonDeniedByPolicy = "denied by the dispatcher's egress policy"
	reasonInvalidAddr    = "not a valid IP address"
	reasonPrivate        = "private address (RFC 1918)"
	reasonDocumentation  = "documentation address"
	reasonMetadata       = "cloud metadata address"
)

// Policy decides which addresses deliveries may connect to. The zero value
// (and a nil *Policy) applies the default denials only. A Policy is
// immutable and safe for concurrent use.
type Policy struct {
	allowed []netip.Prefix
	denied  []netip.Prefix
}

// NewPolicy builds a Policy from the dispatcher's allowed and denied CIDRs,
// such as "10.0.0.0/8" or "fd00::/8". An allowed CIDR lifts the default
// denial of the addresses it covers; a denied CIDR refuses addresses even if
// an allowed CIDR covers them too. A CIDR written in IPv4-mapped IPv6 form
// ("::ffff:10.0.0.0/104") means the IPv4 range it maps. The error names the
// first entry that is not a CIDR.
func NewPolicy(allowedCIDRs, deniedCIDRs []string) (*Policy, error) {
	allowed, err := parsePrefixes("allowedCIDRs", allowedCIDRs)
	if err != nil {
		return nil, err
	}
	denied, err := parsePrefixes("deniedCIDRs", deniedCIDRs)
	if err != nil {
		return nil, err
	}
	return &Policy{allowed: allowed, denied: denied}, nil
}

func parsePrefixes(field string, cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for i, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			// The entry is configuration, not secret, and quoting it is
			// what makes the message useful.
			return nil, fmt.Errorf("%s[%d] %q is not a CIDR such as 10.0.0.0/8 or fd00::/8", field, i, c)
		}
		out = append(out, normalizePrefix(p))
	}
	return out, nil
}

// normalizePrefix turns an IPv4-mapped IPv6 prefix into the IPv4 prefix it
// covers, because mapped addresses are judged as their IPv4 address.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p
}

// Check reports whether deliveries may connect to addr: nil, or a
// *delivery.EgressDeniedError whose Reason names the rule, such as
// "loopback address". The zone of an IPv6 address plays no part. An
// IPv4-mapped IPv6 address is judged as its IPv4 address by the allowed and
// denied CIDRs; if neither lists it, it is denied like every other IPv6 form
// that embeds an IPv4 address.
func (p *Policy) Check(addr netip.Addr) error {
	if reason := p.reason(addr); reason != "" {
		return &delivery.EgressDeniedError{Addr: addr.String(), Reason: reason}
	}
	return nil
}

// reason says why addr is denied, or "" if it is allowed.
func (p *Policy) reason(addr netip.Addr) string {
	if !addr.IsValid() {
		return reasonInvalidAddr
	}
	// netip.Prefix.Contains never matches an address with a zone.
	a := addr.WithZone("")
	v4 := a.Unmap()
	if p.denies(a, v4) {
		return reasonDeniedByPolicy
	}
	if p.allows(v4) {
		return ""
	}
	return p.defaultReason(a)
}

// denies reports whether a denied CIDR covers the address in any of its
// spellings: as given, unmapped, or mapped.
func (p *Policy) denies(a, v4 netip.Addr) bool {
	if p == nil {
		return false
	}
	var mapped netip.Addr
	if v4.Is4() {
		mapped = netip.AddrFrom16(v4.As16())
	}
	for _, d := range p.denied {
		if d.Contains(a) || d.Contains(v4) || (mapped.IsValid() && d.Contains(mapped)) {
			return true
		}
	}
	return false
}

// allows reports whether an allowed CIDR covers v4, the unmapped address:
// an allowed IPv6 range such as ::/0 must not open IPv4 through its mapped
// forms.
func (p *Policy) allows(v4 netip.Addr) bool {
	if p == nil {
		return false
	}
	for _, a := range p.allowed {
		if a.Contains(v4) {
			return true
		}
	}
	return false
}

// defaultReason says which default range holds a, or "" for none.
func (p *Policy) defaultReason(a netip.Addr) string {
	for _, r := range defaultRules {
		if !r.prefix.Contains(a) {
			continue
		}
		if r.embedded != nil {
			for _, v4 := range r.embedded(a.As16()) {
				if why := p.reason(v4); why != "" {
					return fmt.Sprintf("%s embedding %s: %s", r.reason, v4, why)
				}
			}
		}
		return r.reason
	}
	if a.Is6() && !globalUnicast.Contains(a) {
		return "reserved address (outside IPv6 global unicast 2000::/3)"
	}
	return ""
}

// rule is one default denial.
type rule struct {
	prefix netip.Prefix
	reason string
	// embedded returns the IPv4 addresses an IPv6 address of this range
	// carries, so a refusal can say when one of them is denied as well.
	embedded func(a [16]byte) []netip.Addr
}

// globalUnicast is the only IPv6 range allocated for ordinary unicast.
var globalUnicast = netip.MustParsePrefix("2000::/3")

// defaultRules are checked in order, so a narrower range with a more telling
// reason comes before the range that contains it.
var defaultRules = []rule{
	{prefix: mustPrefix("0.0.0.0/32"), reason: "unspecified address"},
	{prefix: mustPrefix("0.0.0.0/8"), reason: "\"this network\" address"},
	{prefix: mustPrefix("127.0.0.0/8"), reason: "loopback address"},
	{prefix: mustPrefix("169.254.169.254/32"), reason: reasonMetadata},
	{prefix: mustPrefix("169.254.0.0/16"), reason: "link-local address"},
	{prefix: mustPrefix("10.0.0.0/8"), reason: reasonPrivate},
	{prefix: mustPrefix("172.16.0.0/12"), reason: reasonPrivate},
	{prefix: mustPrefix("192.168.0.0/16"), reason: reasonPrivate},
	// Alibaba Cloud's metadata endpoint lives in the CGNAT range.
	{prefix: mustPrefix("100.100.100.200/32"), reason: reasonMetadata},
	{prefix: mustPrefix("100.64.0.0/10"), reason: "shared address space (CGNAT)"},
	{prefix: mustPrefix("192.0.0.0/24"), reason: "IETF protocol assignment address"},
	{prefix: mustPrefix("192.0.2.0/24"), reason: reasonDocumentation},
	{prefix: mustPrefix("198.51.100.0/24"), reason: reasonDocumentation},
	{prefix: mustPrefix("203.0.113.0/24"), reason: reasonDocumentation},
	{prefix: mustPrefix("192.88.99.0/24"), reason: "6to4 relay anycast address"},
	{prefix: mustPrefix("198.18.0.0/15"), reason: "benchmarking address"},
	{prefix: mustPrefix("224.0.0.0/4"), reason: "multicast address"},
	{prefix: mustPrefix("255.255.255.255/32"), reason: "broadcast address"},
	{prefix: mustPrefix("240.0.0.0/4"), reason: "reserved address"},

	{prefix: mustPrefix("::/128"), reason: "unspecified address"},
	{prefix: mustPrefix("::1/128"), reason: "loopback address"},
	{prefix: mustPrefix("::ffff:0:0/96"), reason: "IPv4-mapped IPv6 address", embedded: last32},
	{prefix: mustPrefix("::ffff:0:0:0/96"), reason: "IPv4-translated IPv6 address", embedded: last32},
	{prefix: mustPrefix("::/96"), reason: "IPv4-compatible IPv6 address", embedded: last32},
	{prefix: mustPrefix("64:ff9b::/96"), reason: "NAT64 address", embedded: last32},
	{prefix: mustPrefix("64:ff9b:1::/48"), reason: "local-use NAT64 address", embedded: localNAT64},
	{prefix: mustPrefix("100::/64"), reason: "discard-only address"},
	{prefix: mustPrefix("2001::/32"), reason: "Teredo address", embedded: teredo},
	{prefix: mustPrefix("2001:2::/48"), reason: "benchmarking address"},
	{prefix: mustPrefix("2001:10::/28"), reason: "ORCHID address"},
	{prefix: mustPrefix("2001:20::/28"), reason: "ORCHIDv2 address"},
	{prefix: mustPrefix("2001:db8::/32"), reason: reasonDocumentation},
	{prefix: mustPrefix("3fff::/20"), reason: reasonDocumentation},
	{prefix: mustPrefix("2002::/16"), reason: "6to4 address", embedded: sixToFour},
	// AWS's IPv6 metadata endpoint, inside the unique-local range.
	{prefix: mustPrefix("fd00:ec2::254/128"), reason: reasonMetadata},
	{prefix: mustPrefix("fc00::/7"), reason: "unique-local address"},
	{prefix: mustPrefix("fe80::/10"), reason: "link-local address"},
	{prefix: mustPrefix("fec0::/10"), reason: "site-local address"},
	{prefix: mustPrefix("ff00::/8"), reason: "multicast address"},
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func v4At(b [16]byte, i, j, k, l int) netip.Addr {
	return netip.AddrFrom4([4]byte{b[i], b[j], b[k], b[l]})
}

// last32 reads the IPv4 address from the low 32 bits, where the mapped,
// translated, compatible and well-known NAT64 forms put it.
func last32(b [16]byte) []netip.Addr {
	return []netip.Addr{v4At(b, 12, 13, 14, 15)}
}

// localNAT64 reads the IPv4 address from a local-use NAT64 address, which
// RFC 6052 puts in the low 32 bits after a /96 prefix, or around the
// reserved octet 8 after the /48 itself. The low 32 bits are the suffix,
// normally zero, in the second layout, so they tell the two apart.
func localNAT64(b [16]byte) []netip.Addr {
	if b[12]|b[13]|b[14]|b[15] != 0 {
		return []netip.Addr{v4At(b, 12, 13, 14, 15)}
	}
	return []netip.Addr{v4At(b, 6, 7, 9, 10)}
}

// sixToFour reads the IPv4 address that follows 2002::/16.
func sixToFour(b [16]byte) []netip.Addr {
	return []netip.Addr{v4At(b, 2, 3, 4, 5)}
}

// teredo reads the client's IPv4 address, stored inverted in the low 32
// bits, and the Teredo server's, after the prefix.
func teredo(b [16]byte) []netip.Addr {
	client := netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
	return []netip.Addr{client, v4At(b, 4, 5, 6, 7)}
}
