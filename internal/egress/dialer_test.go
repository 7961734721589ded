package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hookline/hookline/internal/delivery"
)

func denied(addr, reason string) string { return "egress to " + addr + " denied: " + reason }

func TestDialContext(t *testing.T) {
	const (
		loopback    = "loopback address"
		private     = "private address (RFC 1918)"
		metadata    = "cloud metadata address"
		linkLocal   = "link-local address"
		docs        = "documentation address"
		byPolicy    = "denied by the dispatcher's egress policy"
		mapped      = "IPv4-mapped IPv6 address"
		nonCanon127 = "IP address 127.0.0.1 written in a non-canonical form: loopback address"
	)
	names := map[string][]string{
		"localhost":             {"127.0.0.1", "::1"},
		"metadata.example":      {"169.254.169.254"},
		"rebind.example":        {"93.184.216.34", "127.0.0.1"},
		"v6-loopback.example":   {"::1"},
		"mapped-private.test":   {"::ffff:10.0.0.1"},
		"public.example":        {"93.184.216.34"},
		"go-mapped.example":     {"::ffff:93.184.216.34"},
		"dual.example":          {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
		"flaky.example":         {"93.184.216.35", "93.184.216.34"},
		"in-cluster.svc":        {"10.96.4.7"},
		"split.example":         {"10.96.4.7", "10.9.0.4"},
		"nat64-loopback.test":   {"64:ff9b::7f00:1"},
		"ula.example":           {"fd12:3456::1"},
		"cgnat.example":         {"100.64.0.1"},
		"empty.example":         {},
		"v6-public.example":     {"2606:4700:4700::1111"},
		"mapped-metadata.test":  {"::ffff:169.254.169.254"},
		"documentation.example": {"198.51.100.7", "203.0.113.9"},
	}
	cases := []struct {
		name             string
		allowed, denied_ []string
		network          string
		addr             string
		refuse           []string
		wantErr          string // exact error text; "" for a connection
		wantDenied       bool
		wantDialled      []string
	}{
		// IPv4 literals, default policy.
		{name: "loopback", addr: "127.0.0.1:443", wantErr: denied("127.0.0.1:443", loopback), wantDenied: true},
		{name: "loopback top", addr: "127.255.255.254:443", wantErr: denied("127.255.255.254:443", loopback), wantDenied: true},
		{name: "unspecified", addr: "0.0.0.0:80", wantErr: denied("0.0.0.0:80", "unspecified address"), wantDenied: true},
		{name: "this network", addr: "0.1.2.3:80", wantErr: denied("0.1.2.3:80", `"this network" address`), wantDenied: true},
		{name: "cloud metadata", addr: "169.254.169.254:80", wantErr: denied("169.254.169.254:80", metadata), wantDenied: true},
		{name: "link-local", addr: "169.254.10.1:80", wantErr: denied("169.254.10.1:80", linkLocal), wantDenied: true},
		{name: "private 10/8", addr: "10.1.2.3:443", wantErr: denied("10.1.2.3:443", private), wantDenied: true},
		{name: "private 172.16/12 low", addr: "172.16.0.1:443", wantErr: denied("172.16.0.1:443", private), wantDenied: true},
		{name: "private 172.16/12 high", addr: "172.31.255.255:443", wantErr: denied("172.31.255.255:443", private), wantDenied: true},
		{name: "just above 172.16/12 is public", addr: "172.32.0.1:443", wantDialled: []string{"172.32.0.1:443"}},
		{name: "private 192.168/16", addr: "192.168.1.1:443", wantErr: denied("192.168.1.1:443", private), wantDenied: true},
		{name: "CGNAT", addr: "100.64.0.1:443", wantErr: denied("100.64.0.1:443", "shared address space (CGNAT)"), wantDenied: true},
		{name: "Alibaba metadata", addr: "100.100.100.200:80", wantErr: denied("100.100.100.200:80", metadata), wantDenied: true},
		{name: "IETF protocol assignments", addr: "192.0.0.8:443", wantErr: denied("192.0.0.8:443", "IETF protocol assignment address"), wantDenied: true},
		{name: "benchmarking", addr: "198.19.255.1:443", wantErr: denied("198.19.255.1:443", "benchmarking address"), wantDenied: true},
		{name: "reserved", addr: "240.0.0.1:443", wantErr: denied("240.0.0.1:443", "reserved address"), wantDenied: true},
		{name: "broadcast", addr: "255.255.255.255:443", wantErr: denied("255.255.255.255:443", "broadcast address"), wantDenied: true},
		{name: "multicast", addr: "224.0.0.1:443", wantErr: denied("224.0.0.1:443", "multicast address"), wantDenied: true},
		{name: "documentation 1", addr: "192.0.2.1:443", wantErr: denied("192.0.2.1:443", docs), wantDenied: true},
		{name: "documentation 2", addr: "198.51.100.7:443", wantErr: denied("198.51.100.7:443", docs), wantDenied: true},
		{name: "documentation 3", addr: "203.0.113.5:443", wantErr: denied("203.0.113.5:443", docs), wantDenied: true},
		{name: "public IPv4", addr: "8.8.8.8:443", wantDialled: []string{"8.8.8.8:443"}},

		// IPv6 literals, default policy.
		{name: "IPv6 loopback", addr: "[::1]:443", wantErr: denied("[::1]:443", loopback), wantDenied: true},
		{name: "IPv6 unspecified", addr: "[::]:443", wantErr: denied("[::]:443", "unspecified address"), wantDenied: true},
		{name: "IPv6 link-local", addr: "[fe80::1]:443", wantErr: denied("[fe80::1]:443", linkLocal), wantDenied: true},
		{name: "IPv6 link-local with zone", addr: "[fe80::1%eth0]:443", wantErr: denied("[fe80::1%eth0]:443", linkLocal), wantDenied: true},
		{name: "IPv6 multicast", addr: "[ff02::1]:443", wantErr: denied("[ff02::1]:443", "multicast address"), wantDenied: true},
		{name: "IPv6 documentation", addr: "[2001:db8::1]:443", wantErr: denied("[2001:db8::1]:443", docs), wantDenied: true},
		{name: "IPv6 documentation 3fff::/20", addr: "[3fff:0fff::1]:443", wantErr: denied("[3fff:0fff::1]:443", docs), wantDenied: true},
		{name: "unique-local fc00", addr: "[fc00::1]:443", wantErr: denied("[fc00::1]:443", "unique-local address"), wantDenied: true},
		{name: "unique-local fd00", addr: "[fd12:3456::1]:443", wantErr: denied("[fd12:3456::1]:443", "unique-local address"), wantDenied: true},
		{name: "AWS IPv6 metadata", addr: "[fd00:ec2::254]:80", wantErr: denied("[fd00:ec2::254]:80", metadata), wantDenied: true},
		{name: "site-local", addr: "[fec0::1]:443", wantErr: denied("[fec0::1]:443", "site-local address"), wantDenied: true},
		{name: "discard-only", addr: "[100::1]:443", wantErr: denied("[100::1]:443", "discard-only address"), wantDenied: true},
		{name: "ORCHID", addr: "[2001:10::1]:443", wantErr: denied("[2001:10::1]:443", "ORCHID address"), wantDenied: true},
		{name: "ORCHIDv2", addr: "[2001:20::1]:443", wantErr: denied("[2001:20::1]:443", "ORCHIDv2 address"), wantDenied: true},
		{name: "IPv6 benchmarking", addr: "[2001:2::1]:443", wantErr: denied("[2001:2::1]:443", "benchmarking address"), wantDenied: true},
		{name: "IPv6 outside global unicast", addr: "[4000::1]:443", wantErr: denied("[4000::1]:443", "reserved address (outside IPv6 global unicast 2000::/3)"), wantDenied: true},
		{name: "public IPv6", addr: "[2606:4700:4700::1111]:443", wantDialled: []string{"[2606:4700:4700::1111]:443"}},

		// IPv6 forms embedding IPv4: the whole range is denied, and a denied
		// embedded address is named.
		{name: "mapped loopback", addr: "[::ffff:127.0.0.1]:443", wantErr: denied("[::ffff:127.0.0.1]:443", mapped+" embedding 127.0.0.1: loopback address"), wantDenied: true},
		{name: "mapped loopback in hex", addr: "[::ffff:7f00:1]:443", wantErr: denied("[::ffff:7f00:1]:443", mapped+" embedding 127.0.0.1: loopback address"), wantDenied: true},
		{name: "mapped metadata", addr: "[::ffff:169.254.169.254]:80", wantErr: denied("[::ffff:169.254.169.254]:80", mapped+" embedding 169.254.169.254: cloud metadata address"), wantDenied: true},
		{name: "mapped private", addr: "[::ffff:10.0.0.1]:443", wantErr: denied("[::ffff:10.0.0.1]:443", mapped+" embedding 10.0.0.1: "+private), wantDenied: true},
		{name: "mapped public", addr: "[::ffff:8.8.8.8]:443", wantErr: denied("[::ffff:8.8.8.8]:443", mapped), wantDenied: true},
		{name: "IPv4-compatible loopback", addr: "[::127.0.0.1]:443", wantErr: denied("[::127.0.0.1]:443", "IPv4-compatible IPv6 address embedding 127.0.0.1: loopback address"), wantDenied: true},
		{name: "IPv4-translated loopback", addr: "[::ffff:0:7f00:1]:443", wantErr: denied("[::ffff:0:7f00:1]:443", "IPv4-translated IPv6 address embedding 127.0.0.1: loopback address"), wantDenied: true},
		{name: "NAT64 loopback", addr: "[64:ff9b::7f00:1]:443", wantErr: denied("[64:ff9b::7f00:1]:443", "NAT64 address embedding 127.0.0.1: loopback address"), wantDenied: true},
		{name: "NAT64 public", addr: "[64:ff9b::808:808]:443", wantErr: denied("[64:ff9b::808:808]:443", "NAT64 address"), wantDenied: true},
		{name: "local NAT64 /96 metadata", addr: "[64:ff9b:1::a9fe:a9fe]:80", wantErr: denied("[64:ff9b:1::a9fe:a9fe]:80", "local-use NAT64 address embedding 169.254.169.254: cloud metadata address"), wantDenied: true},
		{name: "local NAT64 /48 loopback", addr: "[64:ff9b:1:7f00:0:100::]:80", wantErr: denied("[64:ff9b:1:7f00:0:100::]:80", "local-use NAT64 address embedding 127.0.0.1: loopback address"), wantDenied: true},
		{name: "6to4 loopback", addr: "[2002:7f00:1::1]:443", wantErr: denied("[2002:7f00:1::1]:443", "6to4 address embedding 127.0.0.1: loopback address"), wantDenied: true},
		{name: "6to4 public", addr: "[2002:808:808::1]:443", wantErr: denied("[2002:808:808::1]:443", "6to4 address"), wantDenied: true},
		{name: "Teredo client loopback", addr: "[2001:0:4136:e378:8000:63bf:80ff:fffe]:443", wantErr: denied("[2001:0:4136:e378:8000:63bf:80ff:fffe]:443", "Teredo address embedding 127.0.0.1: loopback address"), wantDenied: true},
		{name: "Teredo client documentation", addr: "[2001:0:4136:e378:8000:63bf:3fff:fdd2]:443", wantErr: denied("[2001:0:4136:e378:8000:63bf:3fff:fdd2]:443", "Teredo address embedding 192.0.2.45: documentation address"), wantDenied: true},

		// Other spellings of IPv4.
		{name: "decimal", addr: "2130706433:443", wantErr: denied("2130706433:443", nonCanon127), wantDenied: true},
		{name: "octal", addr: "0177.0.0.1:443", wantErr: denied("0177.0.0.1:443", nonCanon127), wantDenied: true},
		{name: "octal single part", addr: "017700000001:443", wantErr: denied("017700000001:443", nonCanon127), wantDenied: true},
		{name: "hex", addr: "0x7f.0.0.1:443", wantErr: denied("0x7f.0.0.1:443", nonCanon127), wantDenied: true},
		{name: "hex single part metadata", addr: "0xA9FEA9FE:80", wantErr: denied("0xA9FEA9FE:80", "IP address 169.254.169.254 written in a non-canonical form: cloud metadata address"), wantDenied: true},
		{name: "two parts", addr: "127.1:443", wantErr: denied("127.1:443", nonCanon127), wantDenied: true},
		{name: "three parts", addr: "127.0.1:443", wantErr: denied("127.0.1:443", nonCanon127), wantDenied: true},
		{name: "mixed hex and octal", addr: "0x7f.0.01:443", wantErr: denied("0x7f.0.01:443", nonCanon127), wantDenied: true},
		{name: "trailing dot", addr: "127.0.0.1.:443", wantErr: denied("127.0.0.1.:443", nonCanon127), wantDenied: true},
		{name: "leading zeros private", addr: "010.0.0.1:443", wantErr: denied("010.0.0.1:443", "IP address 8.0.0.1 written in a non-canonical form"), wantDenied: true},
		{name: "odd spelling of a public address", addr: "134744072:443", wantErr: denied("134744072:443", "IP address 8.8.8.8 written in a non-canonical form"), wantDenied: true},
		{name: "invalid octal", addr: "08.0.0.1:443", wantErr: denied("08.0.0.1:443", "host ends in a number but is not a valid IP address"), wantDenied: true},
		{name: "five parts", addr: "1.2.3.4.5:443", wantErr: denied("1.2.3.4.5:443", "host ends in a number but is not a valid IP address"), wantDenied: true},

		// Names.
		{name: "localhost", addr: "localhost:8080", wantErr: denied("localhost:8080", "resolves to 127.0.0.1: loopback address"), wantDenied: true},
		{name: "name to metadata", addr: "metadata.example:80", wantErr: denied("metadata.example:80", "resolves to 169.254.169.254: cloud metadata address"), wantDenied: true},
		{name: "public first then loopback", addr: "rebind.example:443", wantErr: denied("rebind.example:443", "resolves to 127.0.0.1: loopback address"), wantDenied: true},
		{name: "name to IPv6 loopback", addr: "v6-loopback.example:443", wantErr: denied("v6-loopback.example:443", "resolves to ::1: loopback address"), wantDenied: true},
		{name: "name to mapped private", addr: "mapped-private.test:443", wantErr: denied("mapped-private.test:443", "resolves to 10.0.0.1: "+private), wantDenied: true},
		{name: "name to mapped metadata", addr: "mapped-metadata.test:80", wantErr: denied("mapped-metadata.test:80", "resolves to 169.254.169.254: cloud metadata address"), wantDenied: true},
		{name: "name to NAT64 loopback", addr: "nat64-loopback.test:443", wantErr: denied("nat64-loopback.test:443", "resolves to 64:ff9b::7f00:1: NAT64 address embedding 127.0.0.1: loopback address"), wantDenied: true},
		{name: "name to unique-local", addr: "ula.example:443", wantErr: denied("ula.example:443", "resolves to fd12:3456::1: unique-local address"), wantDenied: true},
		{name: "name to CGNAT", addr: "cgnat.example:443", wantErr: denied("cgnat.example:443", "resolves to 100.64.0.1: shared address space (CGNAT)"), wantDenied: true},
		{name: "name to documentation", addr: "documentation.example:443", wantErr: denied("documentation.example:443", "resolves to 198.51.100.7: documentation address"), wantDenied: true},
		{name: "public name dialled by IP", addr: "public.example:443", wantDialled: []string{"93.184.216.34:443"}},
		{name: "mapped answer from Go's resolver dialled as IPv4", addr: "go-mapped.example:443", wantDialled: []string{"93.184.216.34:443"}},
		{name: "public IPv6 name", addr: "v6-public.example:443", wantDialled: []string{"[2606:4700:4700::1111]:443"}},
		{name: "first address answers", addr: "dual.example:443", wantDialled: []string{"93.184.216.34:443"}},
		{name: "addresses tried in turn", addr: "flaky.example:443", refuse: []string{"93.184.216.35:443"}, wantDialled: []string{"93.184.216.35:443", "93.184.216.34:443"}},
		{name: "all addresses refuse", addr: "flaky.example:443", refuse: []string{"93.184.216.35:443", "93.184.216.34:443"}, wantErr: "dial tcp: connection refused", wantDialled: []string{"93.184.216.35:443", "93.184.216.34:443"}},
		{name: "tcp4 keeps IPv4", network: "tcp4", addr: "dual.example:443", refuse: []string{"93.184.216.34:443"}, wantErr: "dial tcp4: connection refused", wantDialled: []string{"93.184.216.34:443"}},
		{name: "tcp6 keeps IPv6", network: "tcp6", addr: "dual.example:443", wantDialled: []string{"[2606:2800:220:1:248:1893:25c8:1946]:443"}},
		{name: "unknown name is no refusal", addr: "nx.example:443", wantErr: "resolve nx.example: lookup nx.example: no such host"},
		{name: "name without addresses", addr: "empty.example:443", wantErr: "lookup empty.example: no addresses"},
		{name: "unix socket", network: "unix", addr: "/run/docker.sock", wantErr: denied("/run/docker.sock", `network "unix" is not allowed, only tcp`), wantDenied: true},
		{name: "udp", network: "udp", addr: "8.8.8.8:53", wantErr: denied("8.8.8.8:53", `network "udp" is not allowed, only tcp`), wantDenied: true},

		// The dispatcher's own CIDRs.
		{name: "allowed loopback", allowed: []string{"127.0.0.1/32"}, addr: "127.0.0.1:8443", wantDialled: []string{"127.0.0.1:8443"}},
		{name: "allowed loopback, mapped form", allowed: []string{"127.0.0.1/32"}, addr: "[::ffff:127.0.0.1]:8443", wantDialled: []string{"127.0.0.1:8443"}},
		{name: "allowed in mapped form, used as IPv4", allowed: []string{"::ffff:127.0.0.1/128"}, addr: "127.0.0.1:8443", wantDialled: []string{"127.0.0.1:8443"}},
		{name: "allowed /32 is no more", allowed: []string{"127.0.0.1/32"}, addr: "127.0.0.2:8443", wantErr: denied("127.0.0.2:8443", loopback), wantDenied: true},
		{name: "allowed range for a name", allowed: []string{"10.0.0.0/8"}, addr: "in-cluster.svc:443", wantDialled: []string{"10.96.4.7:443"}},
		{name: "denied wins over allowed", allowed: []string{"10.0.0.0/8"}, denied_: []string{"10.9.0.0/16"}, addr: "10.9.1.1:443", wantErr: denied("10.9.1.1:443", byPolicy), wantDenied: true},
		{name: "denied wins over allowed for a name", allowed: []string{"10.0.0.0/8"}, denied_: []string{"10.9.0.0/16"}, addr: "split.example:443", wantErr: denied("split.example:443", "resolves to 10.9.0.4: "+byPolicy), wantDenied: true},
		{name: "denied public", denied_: []string{"93.184.216.0/24"}, addr: "93.184.216.34:443", wantErr: denied("93.184.216.34:443", byPolicy), wantDenied: true},
		{name: "denied public name", denied_: []string{"93.184.216.0/24"}, addr: "public.example:443", wantErr: denied("public.example:443", "resolves to 93.184.216.34: "+byPolicy), wantDenied: true},
		{name: "denied IPv4 covers mapped", denied_: []string{"203.0.113.0/24"}, addr: "[::ffff:203.0.113.5]:443", wantErr: denied("[::ffff:203.0.113.5]:443", byPolicy), wantDenied: true},
		{name: "denied mapped covers IPv4", allowed: []string{"0.0.0.0/0"}, denied_: []string{"::ffff:8.8.8.0/120"}, addr: "8.8.8.8:443", wantErr: denied("8.8.8.8:443", byPolicy), wantDenied: true},
		{name: "denied IPv6", denied_: []string{"2606:4700::/32"}, addr: "[2606:4700:4700::1111]:443", wantErr: denied("[2606:4700:4700::1111]:443", byPolicy), wantDenied: true},
		{name: "allowed IPv6 range does not open mapped IPv4", allowed: []string{"::/0"}, addr: "[::ffff:127.0.0.1]:443", wantErr: denied("[::ffff:127.0.0.1]:443", mapped+" embedding 127.0.0.1: loopback address"), wantDenied: true},
		{name: "allowed NAT64 range", allowed: []string{"64:ff9b::/96"}, addr: "[64:ff9b::808:808]:443", wantDialled: []string{"[64:ff9b::808:808]:443"}},
		{name: "allowed embedded IPv4 leaves NAT64 denied", allowed: []string{"10.0.0.0/8"}, addr: "[64:ff9b::a00:1]:443", wantErr: denied("[64:ff9b::a00:1]:443", "NAT64 address"), wantDenied: true},
		{name: "allowed link-local keeps the zone", allowed: []string{"fe80::/10"}, addr: "[fe80::1%eth0]:443", wantDialled: []string{"[fe80::1%eth0]:443"}},
		{name: "allowed address in an odd spelling", allowed: []string{"127.0.0.1/32"}, addr: "0x7f.1:443", wantErr: denied("0x7f.1:443", "IP address 127.0.0.1 written in a non-canonical form"), wantDenied: true},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d vectors", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &dialRecorder{refuse: tc.refuse}
			d := &Dialer{
				Policy:   mustPolicy(t, tc.allowed, tc.denied_),
				Resolver: &fakeResolver{answers: names},
				dial:     rec.dial,
			}
			network := tc.network
			if network == "" {
				network = "tcp"
			}
			conn, err := d.DialContext(context.Background(), network, tc.addr)
			if conn != nil {
				_ = conn.Close()
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("DialContext(%s): %v", tc.addr, err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("DialContext(%s) connected, want error %q", tc.addr, tc.wantErr)
			case tc.wantErr != "" && err.Error() != tc.wantErr:
				t.Fatalf("DialContext(%s) error:\n got %q\nwant %q", tc.addr, err, tc.wantErr)
			}
			if got := errors.Is(err, delivery.ErrEgressDenied); got != tc.wantDenied {
				t.Errorf("errors.Is(err, ErrEgressDenied) = %v, want %v (err: %v)", got, tc.wantDenied, err)
			}
			if tc.wantDenied {
				var ede *delivery.EgressDeniedError
				if !errors.As(err, &ede) || ede.Addr != tc.addr {
					t.Errorf("error %#v: want an *EgressDeniedError with Addr %q", err, tc.addr)
				}
			}
			if tc.wantErr == "" && conn == nil {
				t.Errorf("DialContext returned neither a connection nor an error")
			}
			if diff := cmp.Diff(tc.wantDialled, rec.all()); diff != "" {
				t.Errorf("dialled (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDialContextBadAddress(t *testing.T) {
	rec := &dialRecorder{}
	d := &Dialer{Resolver: &fakeResolver{}, dial: rec.dial}
	for _, addr := range []string{"8.8.8.8", "8.8.8.8:https", "8.8.8.8:70000", "[::1:443"} {
		_, err := d.DialContext(context.Background(), "tcp", addr)
		if err == nil || errors.Is(err, delivery.ErrEgressDenied) {
			t.Errorf("DialContext(%q) = %v, want an ordinary error", addr, err)
		}
	}
	if got := rec.all(); len(got) != 0 {
		t.Errorf("dialled %q", got)
	}
}

// TestDialContextRealNetwork dials through the real net.Dialer, whose
// socket check must let an allowed address through.
func TestDialContextRealNetwork(t *testing.T) {
	srv, conns := countingServer(t)
	d := &Dialer{Policy: mustPolicy(t, []string{"127.0.0.1/32"}, nil), Resolver: &fakeResolver{answers: map[string][]string{"receiver.test": {"127.0.0.1"}}}}
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	conn, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("receiver.test", port))
	if err != nil {
		t.Fatalf("DialContext: %v", err)
	}
	if got := conn.RemoteAddr().String(); got != srv.Listener.Addr().String() {
		t.Errorf("connected to %s, want %s", got, srv.Listener.Addr())
	}
	_ = conn.Close()
	waitFor(t, "the server to see the connection", func() bool { return conns.Load() == 1 })
}

// TestSocketCheck shows the second line of defence: the socket's own
// address is checked, even when nothing resolved or judged it before.
func TestSocketCheck(t *testing.T) {
	srv, conns := countingServer(t)
	d := &Dialer{}
	// The net.Dialer used for vetted addresses, called here directly with
	// an address nothing has vetted.
	_, err := d.dialFunc()(context.Background(), "tcp", srv.Listener.Addr().String())
	if !errors.Is(err, delivery.ErrEgressDenied) {
		t.Fatalf("dial %s: %v, want an egress refusal", srv.Listener.Addr(), err)
	}
	var ede *delivery.EgressDeniedError
	if !errors.As(err, &ede) || ede.Addr != srv.Listener.Addr().String() || ede.Reason != "loopback address" {
		t.Errorf("error %#v, want Addr %s and Reason %q", err, srv.Listener.Addr(), "loopback address")
	}
	// The server counts a connection as it accepts it, in order: had the
	// refused dial connected, this request's connection would be the
	// second.
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatalf("GET %s: %v", srv.URL, err)
	}
	_ = resp.Body.Close()
	if got := conns.Load(); got != 1 {
		t.Errorf("server saw %d connections, want only the 1 of the check itself", got)
	}

	cases := []struct {
		network, address, wantReason string
	}{
		{"tcp4", "127.0.0.1:80", "loopback address"},
		{"tcp6", "[::ffff:169.254.169.254]:80", "cloud metadata address"},
		{"tcp6", "[fe80::1%eth0]:80", "link-local address"},
		{"tcp4", "10.0.0.1:443", "private address (RFC 1918)"},
		{"tcp4", "8.8.8.8:443", ""},
		{"tcp6", "[2606:4700:4700::1111]:443", ""},
		{"unix", "/run/x.sock", "socket address is not an IP address and port"},
	}
	for _, tc := range cases {
		err := d.control(tc.network, tc.address, nil)
		if tc.wantReason == "" {
			if err != nil {
				t.Errorf("control(%s, %s) = %v, want nil", tc.network, tc.address, err)
			}
			continue
		}
		var ede *delivery.EgressDeniedError
		if !errors.As(err, &ede) || ede.Reason != tc.wantReason || ede.Addr != tc.address {
			t.Errorf("control(%s, %s) = %#v, want a refusal of %s for %q", tc.network, tc.address, err, tc.address, tc.wantReason)
		}
	}
}

// countingServer is a loopback HTTP server that counts the connections it
// accepts.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func TestDialerDefaultsToDefaultPolicy(t *testing.T) {
	rec := &dialRecorder{}
	d := &Dialer{dial: rec.dial}
	if _, err := d.DialContext(context.Background(), "tcp", "[::1]:443"); !errors.Is(err, delivery.ErrEgressDenied) {
		t.Fatalf("nil Policy let [::1]:443 through: %v", err)
	}
	if conn, err := d.DialContext(context.Background(), "tcp", "1.1.1.1:443"); err != nil {
		t.Fatalf("nil Policy refused 1.1.1.1:443: %v", err)
	} else {
		_ = conn.Close()
	}
	if got := rec.all(); !slices.Equal(got, []string{"1.1.1.1:443"}) {
		t.Errorf("dialled %q", got)
	}
}
