package egress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/hookline/hookline/internal/delivery"
)

func TestParseHost(t *testing.T) {
	cases := []struct {
		host      string
		want      string // "" when not an address
		canonical bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"0.0.0.0", "0.0.0.0", true},
		{"255.255.255.255", "255.255.255.255", true},
		{"2130706433", "127.0.0.1", false},
		{"4294967295", "255.255.255.255", false},
		{"0", "0.0.0.0", false},
		{"0177.0.0.1", "127.0.0.1", false},
		{"00000177.0.0.01", "127.0.0.1", false},
		{"0x7f.0.0.1", "127.0.0.1", false},
		{"0X7F.0x0.0X0.0x1", "127.0.0.1", false},
		{"0x7f000001", "127.0.0.1", false},
		{"0x000000007f000001", "127.0.0.1", false},
		{"0x", "0.0.0.0", false},
		{"0x.0x.0x.0x1", "0.0.0.1", false},
		{"127.1", "127.0.0.1", false},
		{"127.0.1", "127.0.0.1", false},
		{"10.65535", "10.0.255.255", false},
		{"10.1.65535", "10.1.255.255", false},
		{"169.16689662", "169.254.169.254", false},
		{"0xa9.0376.0xa9fe", "169.254.169.254", false},
		{"127.0.0.1.", "127.0.0.1", false},
		{"010.8.8.8", "8.8.8.8", false},
		{"::1", "::1", true},
		{"[::1]", "::1", true},
		{"[0:0:0:0:0:0:0:1]", "::1", true},
		{"[::ffff:127.0.0.1]", "::ffff:127.0.0.1", true},
		{"::FFFF:7F00:1", "::ffff:127.0.0.1", true},
		{"fe80::1%eth0", "fe80::1%eth0", true},
		{"[fe80::1%25eth0]", "fe80::1%eth0", true},
		{"[fe80::1%eth0]", "fe80::1%eth0", true},
		{"[fe80::1%25]", "fe80::1%25", true},
		{"[127.0.0.1]", "127.0.0.1", false},
		{"[0x7f.1]", "127.0.0.1", false},

		{"", "", false},
		{"example.com", "", false},
		{"localhost", "", false},
		{"127.0.0.1.nip.io", "", false},
		{"1.2.3.4.5", "", false},
		{"256.0.0.1", "", false},
		{"1.2.3.256", "", false},
		{"1.2.65536", "", false},
		{"1.16777216", "", false},
		{"4294967296", "", false},
		{"99999999999999999999999", "", false},
		{"08.0.0.1", "", false},
		{"0x1g.0.0.1", "", false},
		{"1..2.3", "", false},
		{".1.2.3", "", false},
		{"127.0.0.1..", "", false},
		{"+1.2.3.4", "", false},
		{"1.2.3.-4", "", false},
		{" 127.0.0.1", "", false},
		{"127.0.0.1 ", "", false},
		{"１２７.0.0.1", "", false},
		{"[::1", "", false},
		{"::1]", "", false},
		{"[]", "", false},
		{"[example.com]", "", false},
		{"fe80::1%", "", false},
		{"fe80::1%eth0/x", "", false},
		{"fe80::1%25@8.8.8.8", "", false},
		{"::ffff:0177.0.0.1", "", false},
		{"1:2:3:4:5:6:7:8:9", "", false},
		{"[::1]:443", "", false},
	}
	for _, tc := range cases {
		got, canonical, ok := parseHost(tc.host)
		if tc.want == "" {
			if ok || got.IsValid() {
				t.Errorf("parseHost(%q) = %v, %v; want no address", tc.host, got, ok)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tc.want) || canonical != tc.canonical {
			t.Errorf("parseHost(%q) = %v canonical=%v ok=%v; want %s canonical=%v", tc.host, got, canonical, ok, tc.want, tc.canonical)
		}
		if pub, pubOK := ParseHost(tc.host); pub != got || pubOK != ok {
			t.Errorf("ParseHost(%q) = %v, %v; parseHost gave %v, %v", tc.host, pub, pubOK, got, ok)
		}
	}
}

func TestCheckURL(t *testing.T) {
	p := mustPolicy(t, []string{"10.0.0.0/8"}, []string{"10.9.0.0/16", "93.184.216.0/24"})
	const spelled = "IP address 127.0.0.1 written in a non-canonical form: loopback address"
	cases := []struct {
		url        string
		wantErr    string
		wantDenied bool
	}{
		{url: "https://hooks.example.com/orders?token=s3cr3t"},
		{url: "http://hooks.example.com:8080/"},
		{url: "https://8.8.8.8/hooks"},
		{url: "https://[2606:4700:4700::1111]:8443/hooks"},
		{url: "https://10.1.2.3/in-cluster"},
		{url: "HTTPS://10.1.2.3/upper-case-scheme"},
		{url: "https://localhost/", wantErr: ""},
		{url: "https://127.0.0.1/hooks?token=s3cr3t", wantErr: denied("127.0.0.1:443", "loopback address"), wantDenied: true},
		{url: "http://169.254.169.254/latest/meta-data/", wantErr: denied("169.254.169.254:80", "cloud metadata address"), wantDenied: true},
		{url: "https://user:pa55@192.168.0.1:8443/", wantErr: denied("192.168.0.1:8443", "private address (RFC 1918)"), wantDenied: true},
		{url: "https://10.9.0.1/", wantErr: denied("10.9.0.1:443", "denied by the dispatcher's egress policy"), wantDenied: true},
		{url: "https://93.184.216.34/", wantErr: denied("93.184.216.34:443", "denied by the dispatcher's egress policy"), wantDenied: true},
		{url: "https://[::1]/", wantErr: denied("[::1]:443", "loopback address"), wantDenied: true},
		{url: "https://[::ffff:127.0.0.1]/", wantErr: denied("[::ffff:127.0.0.1]:443", "IPv4-mapped IPv6 address embedding 127.0.0.1: loopback address"), wantDenied: true},
		{url: "https://[::ffff:10.1.2.3]/", wantErr: ""},
		{url: "https://[fe80::1%25eth0]:8443/", wantErr: denied("[fe80::1%eth0]:8443", "link-local address"), wantDenied: true},
		{url: "https://[64:ff9b::a9fe:a9fe]/", wantErr: denied("[64:ff9b::a9fe:a9fe]:443", "NAT64 address embedding 169.254.169.254: cloud metadata address"), wantDenied: true},
		{url: "https://2130706433/", wantErr: denied("2130706433:443", spelled), wantDenied: true},
		{url: "https://0177.0.0.1/", wantErr: denied("0177.0.0.1:443", spelled), wantDenied: true},
		{url: "https://0x7f.1/", wantErr: denied("0x7f.1:443", spelled), wantDenied: true},
		{url: "https://127.0.0.1./", wantErr: denied("127.0.0.1.:443", spelled), wantDenied: true},
		{url: "https://%31%32%37.0.0.1/", wantErr: "URL is not valid"},
		{url: "https://%EF%BC%91.0.0.1/", wantErr: denied("１.0.0.1:443", "host ends in a number but is not a valid IP address"), wantDenied: true},
		{url: "https://012.1.2.3/", wantErr: denied("012.1.2.3:443", "IP address 10.1.2.3 written in a non-canonical form"), wantDenied: true},
		{url: "https://134744072/", wantErr: denied("134744072:443", "IP address 8.8.8.8 written in a non-canonical form"), wantDenied: true},
		{url: "https://1.2.3.4.5/", wantErr: denied("1.2.3.4.5:443", "host ends in a number but is not a valid IP address"), wantDenied: true},
		{url: "https://999.1.1.1/", wantErr: denied("999.1.1.1:443", "host ends in a number but is not a valid IP address"), wantDenied: true},
		{url: "https://example.0x10/", wantErr: denied("example.0x10:443", "host ends in a number but is not a valid IP address"), wantDenied: true},
		{url: "ftp://8.8.8.8/", wantErr: "URL scheme must be http or https"},
		{url: "https:///path", wantErr: "URL has no host"},
		{url: "https://[::1/?token=s3cr3t", wantErr: "URL is not valid"},
		{url: "/relative", wantErr: "URL scheme must be http or https"},
	}
	for _, tc := range cases {
		err := p.CheckURL(tc.url)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("CheckURL(%q) = %v, want nil", tc.url, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.wantErr {
			t.Errorf("CheckURL(%q) = %v, want %q", tc.url, err, tc.wantErr)
			continue
		}
		if got := errors.Is(err, delivery.ErrEgressDenied); got != tc.wantDenied {
			t.Errorf("CheckURL(%q): errors.Is(ErrEgressDenied) = %v, want %v", tc.url, got, tc.wantDenied)
		}
		for _, secret := range []string{"s3cr3t", "pa55", "meta-data"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("CheckURL(%q) error %q quotes the URL", tc.url, err)
			}
		}
	}
}

func TestLooksNumeric(t *testing.T) {
	cases := map[string]bool{
		"1.2.3.4.5":   true,
		"example.123": true,
		"example.0x":  true,
		"example.0xg": false,
		"0x1g":        false,
		"08":          true,
		"example.com": false,
		"123.example": false,
		"":            false,
		".":           false,
		"1.2.3.":      true,
		"a.":          false,
	}
	for host, want := range cases {
		if got := looksNumeric(host); got != want {
			t.Errorf("looksNumeric(%q) = %v, want %v", host, got, want)
		}
	}
}
