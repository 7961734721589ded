package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/hookline/hookline/internal/delivery"
)

func FuzzClassify(f *testing.F) {
	for _, seed := range []string{
		"127.0.0.1", "8.8.8.8", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f.1", "127.1", "127.0.1",
		"127.0.0.1.", "0x", "0x.0x.0x.0x", "4294967295", "4294967296", "08.0.0.1", "1.2.3.4.5",
		"[::1]", "::1", "[::ffff:127.0.0.1]", "::ffff:7f00:1", "[fe80::1%25eth0]", "fe80::1%eth0",
		"fe80::1%25@8.8.8.8", "[64:ff9b::7f00:1]", "[64:ff9b:1:7f00:0:100::]", "[2002:7f00:1::1]",
		"[2001:0:4136:e378:8000:63bf:80ff:fffe]", "[::127.0.0.1]", "[::ffff:0:7f00:1]", "[127.0.0.1]",
		"169.254.169.254", "0xa9fea9fe", "10.0.0.1", "10.9.0.1", "[::ffff:10.9.0.1]", "100.100.100.200",
		"example.com", "localhost", "example.0x10", "", ".", "[]", "[", "１２７.0.0.1",
	} {
		f.Add(seed)
	}
	policies := []*Policy{
		{},
		mustPolicy(f, []string{"127.0.0.1/32", "10.0.0.0/8", "fe80::/10", "64:ff9b::/96"}, []string{"10.9.0.0/16", "8.8.8.0/24", "2606:4700::/32"}),
	}

	f.Fuzz(func(t *testing.T, host string) {
		addr, ok := ParseHost(host)
		if ok != addr.IsValid() {
			t.Fatalf("ParseHost(%q) = %v, %v: ok must say whether the address is valid", host, addr, ok)
		}
		if ok {
			if again, ok := ParseHost(addr.String()); !ok || again != addr {
				t.Fatalf("ParseHost(%q) = %v, but ParseHost(%q) = %v, %v", host, addr, addr.String(), again, ok)
			}
		}
		for _, p := range policies {
			checkInvariants(t, p, host, addr, ok)
		}
	})
}

func checkInvariants(t *testing.T, p *Policy, host string, addr netip.Addr, ok bool) {
	err := p.Check(addr)
	if !ok && err == nil {
		t.Fatalf("Check allowed the zero address")
	}
	if err != nil && !errors.Is(err, delivery.ErrEgressDenied) {
		t.Fatalf("Check(%v) = %v, not an egress refusal", addr, err)
	}
	if ok && addr.Is4() && err != nil {
		mapped := netip.AddrFrom16(addr.As16())
		if p.Check(mapped) == nil {
			t.Fatalf("%v is denied (%v) but its mapped form %v is allowed", addr, err, mapped)
		}
	}

	raw := "https://" + host + "/"
	urlErr := p.CheckURL(raw)
	_ = p.CheckURL(host)
	if ok && err != nil {
		if urlErr == nil {
			t.Fatalf("CheckURL(%q) allowed a host that is the denied address %v (%v)", raw, addr, err)
		}
		if u, perr := url.Parse(raw); perr == nil && u.Hostname() == host && !errors.Is(urlErr, delivery.ErrEgressDenied) {
			t.Fatalf("CheckURL(%q) = %v, want an egress refusal", raw, urlErr)
		}
	}

	// Whatever the host, nothing the policy denies is ever dialled.
	if strings.ContainsAny(host, "[]") {
		return
	}
	rec := &dialRecorder{}
	d := &Dialer{Policy: p, Resolver: &fakeResolver{}, dial: rec.dial}
	conn, dialErr := d.DialContext(context.Background(), "tcp", net.JoinHostPort(host, "443"))
	if conn != nil {
		_ = conn.Close()
	}
	for _, dialled := range rec.all() {
		ap, perr := netip.ParseAddrPort(dialled)
		if perr != nil {
			t.Fatalf("dialled %q, which is no address", dialled)
		}
		if cerr := p.Check(ap.Addr()); cerr != nil {
			t.Fatalf("dialled %s for host %q, which the policy denies: %v", dialled, host, cerr)
		}
	}
	if ok && err != nil && (dialErr == nil || !errors.Is(dialErr, delivery.ErrEgressDenied)) {
		t.Fatalf("DialContext to denied %v (host %q) = %v, want an egress refusal", addr, host, dialErr)
	}
}
