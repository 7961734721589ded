package egress

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/hookline/hookline/internal/delivery"
)

func TestNewPolicyErrors(t *testing.T) {
	cases := []struct {
		name            string
		allowed, denied []string
		wantErr         string
	}{
		{name: "prefix too long", allowed: []string{"10.0.0.0/8", "10.0.0.0/33"},
			wantErr: `allowedCIDRs[1] "10.0.0.0/33" is not a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{name: "bare address", denied: []string{"203.0.113.7"},
			wantErr: `deniedCIDRs[0] "203.0.113.7" is not a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{name: "name", allowed: []string{"svc.cluster.local/32"},
			wantErr: `allowedCIDRs[0] "svc.cluster.local/32" is not a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{name: "empty", denied: []string{"fd00::/8", ""},
			wantErr: `deniedCIDRs[1] "" is not a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{name: "zone", allowed: []string{"fe80::%eth0/10"},
			wantErr: `allowedCIDRs[0] "fe80::%eth0/10" is not a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{name: "octal spelling", allowed: []string{"010.0.0.0/8"},
			wantErr: `allowedCIDRs[0] "010.0.0.0/8" is not a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{name: "IPv6 prefix too long", denied: []string{"::/129"},
			wantErr: `deniedCIDRs[0] "::/129" is not a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{name: "valid lists"},
		{name: "valid with host bits set", allowed: []string{"10.1.2.3/8"}, denied: []string{"2001:db8::1/32"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPolicy(tc.allowed, tc.denied)
			if tc.wantErr == "" {
				if err != nil || p == nil {
					t.Fatalf("NewPolicy = %v, %v", p, err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("NewPolicy error = %v, want %q", err, tc.wantErr)
			}
			if p != nil {
				t.Errorf("NewPolicy returned a policy with its error")
			}
		})
	}
}

func TestNewPolicyMasksHostBits(t *testing.T) {
	p := mustPolicy(t, []string{"10.1.2.3/8"}, []string{"::ffff:10.9.9.9/112"})
	if err := p.Check(netip.MustParseAddr("10.200.0.1")); err != nil {
		t.Errorf("10.200.0.1 should be allowed by 10.1.2.3/8: %v", err)
	}
	for _, a := range []string{"10.9.0.1", "::ffff:10.9.255.255"} {
		if err := p.Check(netip.MustParseAddr(a)); err == nil || err.Error() != "egress to "+a+" denied: denied by the dispatcher's egress policy" {
			t.Errorf("Check(%s) = %v, want a refusal by the policy", a, err)
		}
	}
}

func TestCheck(t *testing.T) {
	cases := []struct {
		policy  *Policy
		addr    netip.Addr
		wantErr string
	}{
		{nil, netip.MustParseAddr("127.0.0.1"), "egress to 127.0.0.1 denied: loopback address"},
		{nil, netip.MustParseAddr("1.1.1.1"), ""},
		{&Policy{}, netip.MustParseAddr("::ffff:1.1.1.1"), "egress to ::ffff:1.1.1.1 denied: IPv4-mapped IPv6 address"},
		{&Policy{}, netip.Addr{}, "egress to invalid IP denied: not a valid IP address"},
		{&Policy{}, netip.MustParseAddr("fe80::1%eth0"), "egress to fe80::1%eth0 denied: link-local address"},
		{mustPolicy(t, []string{"fe80::/10"}, nil), netip.MustParseAddr("fe80::1%eth0"), ""},
		{mustPolicy(t, []string{"fe80::/10"}, []string{"fe80::1/128"}), netip.MustParseAddr("fe80::1%eth0"), "egress to fe80::1%eth0 denied: denied by the dispatcher's egress policy"},
		{mustPolicy(t, nil, []string{"127.0.0.0/8"}), netip.MustParseAddr("::ffff:0:7f00:1"), "egress to ::ffff:0:7f00:1 denied: IPv4-translated IPv6 address embedding 127.0.0.1: denied by the dispatcher's egress policy"},
		{mustPolicy(t, nil, []string{"8.8.8.0/24"}), netip.MustParseAddr("64:ff9b::808:808"), "egress to 64:ff9b::808:808 denied: NAT64 address embedding 8.8.8.8: denied by the dispatcher's egress policy"},
		{mustPolicy(t, []string{"0.0.0.0/0", "::/0"}, nil), netip.MustParseAddr("169.254.169.254"), ""},
		{mustPolicy(t, []string{"2001::/16"}, nil), netip.MustParseAddr("2001:0:4136:e378:8000:63bf:80ff:fffe"), ""},
		{&Policy{}, netip.MustParseAddr("2001::"), "egress to 2001:: denied: Teredo address embedding 255.255.255.255: broadcast address"},
		{&Policy{}, netip.MustParseAddr("2001:0:c000:22d::f7f7:f7f7"), "egress to 2001:0:c000:22d::f7f7:f7f7 denied: Teredo address embedding 192.0.2.45: documentation address"},
		{&Policy{}, netip.MustParseAddr("2002:c000:22d::1"), "egress to 2002:c000:22d::1 denied: 6to4 address embedding 192.0.2.45: documentation address"},
		{&Policy{}, netip.MustParseAddr("::2"), "egress to ::2 denied: IPv4-compatible IPv6 address embedding 0.0.0.2: \"this network\" address"},
		{&Policy{}, netip.MustParseAddr("::1:0:0:1"), "egress to ::1:0:0:1 denied: reserved address (outside IPv6 global unicast 2000::/3)"},
		{&Policy{}, netip.MustParseAddr("192.88.99.1"), "egress to 192.88.99.1 denied: 6to4 relay anycast address"},
		{&Policy{}, netip.MustParseAddr("2a00:1450:4001:80b::200e"), ""},
	}
	for _, tc := range cases {
		err := tc.policy.Check(tc.addr)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("Check(%s) = %v, want nil", tc.addr, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.wantErr {
			t.Errorf("Check(%s) = %v, want %q", tc.addr, err, tc.wantErr)
		}
		if !errors.Is(err, delivery.ErrEgressDenied) {
			t.Errorf("Check(%s) error does not match ErrEgressDenied", tc.addr)
		}
	}
}

// TestDefaultRulesOrder guards the rule table: a rule hidden behind an
// earlier, wider one would never give its reason.
func TestDefaultRulesOrder(t *testing.T) {
	for i, r := range defaultRules {
		for _, earlier := range defaultRules[:i] {
			if earlier.prefix.Bits() <= r.prefix.Bits() && earlier.prefix.Contains(r.prefix.Addr()) {
				t.Errorf("rule %s (%s) is shadowed by the earlier %s (%s)", r.prefix, r.reason, earlier.prefix, earlier.reason)
			}
		}
		if r.prefix != r.prefix.Masked() {
			t.Errorf("rule %s has host bits set", r.prefix)
		}
	}
}
