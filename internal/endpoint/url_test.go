package endpoint

import (
	"errors"
	"strings"
	"testing"
)

type urlVector struct {
	name  string
	raw   string
	allow bool // allowPlainHTTP
	// wantErr is a substring of the expected error, or "" for a valid URL.
	wantErr string
	// plainHTTP says the error must wrap ErrPlainHTTP.
	plainHTTP bool
}

var urlVectors = []urlVector{
	// Valid.
	{name: "https", raw: "https://example.com/hooks"},
	{name: "https with port, query and path", raw: "https://example.com:8443/a/b?x=1&y=2"},
	{name: "bare host", raw: "https://example.com"},
	{name: "upper-case scheme", raw: "HTTPS://example.com/"},
	{name: "IPv4 literal", raw: "https://203.0.113.7/hooks"},
	{name: "IPv6 literal", raw: "https://[2001:db8::1]:8443/hooks"},
	{name: "http when allowed", raw: "http://receiver.team-a.svc:8080/hooks", allow: true},
	{name: "escaped path", raw: "https://example.com/a%20b"},
	{name: "IPv6 loopback literal", raw: "https://[::1]/hooks"},
	{name: "punycode host", raw: "https://xn--bcher-kva.example/hooks"},
	{name: "trailing dot", raw: "https://example.com./hooks"},
	{name: "underscore in a label", raw: "https://_hooks.example.com/"},
	{name: "label of 63 characters", raw: "https://" + strings.Repeat("a", 63) + ".example/"},
	{name: "host of 253 characters", raw: "https://" + strings.Repeat(strings.Repeat("a", 62)+".", 4) + "example/"[:1] + "/"},
	{name: "port 1", raw: "https://example.com:1/"},
	{name: "port 65535", raw: "https://example.com:65535/"},
	{name: "empty port", raw: "https://example.com:/hooks"},
	{name: "escape in the query of a bare host", raw: "https://example.com?x=%20"},
	{name: "digits before the last label", raw: "https://123.example/hooks"},
	{name: "exactly the maximum length", raw: "https://example.com/" + strings.Repeat("a", MaxLength-len("https://example.com/"))},
	{name: "maximum length counted in characters", raw: "https://example.com/" + strings.Repeat("é", MaxLength-len("https://example.com/"))},

	// Plain HTTP, refused by policy only.
	{name: "http when not allowed", raw: "http://example.com/hooks", wantErr: "uses plain http", plainHTTP: true},
	{name: "upper-case http when not allowed", raw: "HTTP://example.com/hooks", wantErr: "spec.egress.allowPlainHTTP", plainHTTP: true},

	// Refused whatever the policy.
	{name: "empty", raw: "", wantErr: "is empty"},
	{name: "too long", raw: "https://example.com/" + strings.Repeat("a", MaxLength), wantErr: "is 2068 characters long, maximum is 2048"},
	{name: "unparsable host", raw: "https://exa mple.com/hooks", wantErr: `is not a valid URL: invalid character " " in host name`},
	{name: "unclosed IPv6 literal", raw: "https://[2001:db8::1/hooks", wantErr: "is not a valid URL: missing ']' in host"},
	{name: "bad port", raw: "https://example.com:port/hooks", wantErr: "is not a valid URL: invalid port"},
	{name: "control character", raw: "https://example.com/\x7f", wantErr: "is not a valid URL: invalid control character in URL"},
	{name: "bad escape", raw: "https://example.com/%zz", wantErr: "is not a valid URL: invalid URL escape"},
	{name: "missing scheme", raw: "://example.com", wantErr: "is not a valid URL: missing protocol scheme"},
	{name: "relative path", raw: "/hooks", wantErr: "must be an absolute URL"},
	{name: "host without scheme", raw: "example.com/hooks", wantErr: "must be an absolute URL"},
	{name: "scheme-relative", raw: "//example.com/hooks", wantErr: "must be an absolute URL"},
	{name: "ftp", raw: "ftp://example.com/hooks", wantErr: `must use the https or http scheme, not "ftp"`, allow: true},
	{name: "ws", raw: "wss://example.com/hooks", wantErr: `not "wss"`},
	{name: "mailto", raw: "mailto:hooks@example.com", wantErr: `not "mailto"`},
	{name: "long scheme cut short", raw: strings.Repeat("h", 40) + "://example.com", wantErr: `not "` + strings.Repeat("h", 32) + `"...`},
	{name: "user and password", raw: "https://user:pass@example.com/hooks", wantErr: "must not carry user info"},
	{name: "user only", raw: "https://token@example.com/hooks", wantErr: "must not carry user info"},
	{name: "empty user info", raw: "https://@example.com/hooks", wantErr: "must not carry user info"},
	{name: "user info over http", raw: "http://user:pass@example.com/", wantErr: "must not carry user info"},
	{name: "no host", raw: "https:///hooks", wantErr: "must name a host"},
	{name: "opaque", raw: "https:example.com", wantErr: "must name a host"},
	{name: "port only", raw: "https://:8443/hooks", wantErr: "must name a host"},
	{name: "port 0", raw: "https://example.com:0/hooks", wantErr: MsgPort},
	{name: "port 65536", raw: "https://example.com:65536/hooks", wantErr: MsgPort},
	{name: "port 99999", raw: "https://example.com:99999/hooks", wantErr: MsgPort},
	{name: "huge port", raw: "https://example.com:99999999999999999999999/hooks", wantErr: MsgPort},
	{name: "full-width digits", raw: "https://１２７．０．０．１/hooks", wantErr: MsgHostASCII},
	{name: "ideographic full stops", raw: "https://127。0。0。1/hooks", wantErr: MsgHostASCII},
	{name: "Arabic-Indic digits", raw: "https://١٢٧.0.0.1/hooks", wantErr: MsgHostASCII},
	{name: "Unicode host name", raw: "https://bücher.example/hooks", wantErr: MsgHostASCII},
	{name: "escaped Unicode host", raw: "https://%EF%BC%91.example/hooks", wantErr: MsgHostASCII},
	{name: "empty label", raw: "https://a..example/hooks", wantErr: MsgHostASCII},
	{name: "label of 64 characters", raw: "https://" + strings.Repeat("a", 64) + ".example/", wantErr: MsgHostASCII},
	{name: "host of 254 characters", raw: "https://" + strings.Repeat(strings.Repeat("a", 62)+".", 4) + "ab/", wantErr: MsgHostASCII},
	{name: "short IPv4 form", raw: "https://127.1/hooks", wantErr: MsgHostCanonicalIP},
	{name: "decimal IPv4 form", raw: "https://2130706433/hooks", wantErr: MsgHostCanonicalIP},
	{name: "hexadecimal IPv4 form", raw: "https://0x7f.0.0.1/hooks", wantErr: MsgHostCanonicalIP},
	{name: "leading zeros", raw: "https://127.000.000.001/hooks", wantErr: MsgHostCanonicalIP},
	{name: "IPv4-mapped IPv6 literal", raw: "https://[::ffff:127.0.0.1]/hooks", wantErr: MsgHostCanonicalIP},
	{name: "IPv6 with zone", raw: "https://[fe80::1%25eth0]/hooks", wantErr: MsgHostCanonicalIP},
	{name: "non-canonical IPv6", raw: "https://[2001:DB8:0:0::1]/hooks", wantErr: MsgHostCanonicalIP},
	{name: "fragment", raw: "https://example.com/hooks#section", wantErr: "must not carry a fragment"},
	{name: "empty fragment", raw: "https://example.com/hooks#", wantErr: "must not carry a fragment"},
	{name: "fragment over allowed http", raw: "http://example.com/#x", allow: true, wantErr: "must not carry a fragment"},
}

func TestValidateURL(t *testing.T) {
	for _, v := range urlVectors {
		t.Run(v.name, func(t *testing.T) {
			err := ValidateURL(v.raw, v.allow)
			if v.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateURL(%q, %v) = %v, want nil", v.raw, v.allow, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateURL(%q, %v) = nil, want an error containing %q", v.raw, v.allow, v.wantErr)
			}
			if !strings.Contains(err.Error(), v.wantErr) {
				t.Errorf("ValidateURL(%q, %v) = %q, want it to contain %q", v.raw, v.allow, err, v.wantErr)
			}
			if got := errors.Is(err, ErrPlainHTTP); got != v.plainHTTP {
				t.Errorf("errors.Is(%q, ErrPlainHTTP) = %v, want %v", err, got, v.plainHTTP)
			}
			if v.plainHTTP {
				if err := ValidateURL(v.raw, true); err != nil {
					t.Errorf("ValidateURL(%q, true) = %v, want nil once plain HTTP is allowed", v.raw, err)
				}
			}
		})
	}
}

// The URL can carry credentials or a token; no error may repeat it.
func TestValidateURLDoesNotRepeatTheURL(t *testing.T) {
	const secret = "s3cr3t-T0ken"
	for _, raw := range []string{
		"https://user:" + secret + "@example.com/hooks",
		"https://" + secret + "@example.com/hooks",
		"ftp://example.com/hooks?token=" + secret,
		"http://example.com/hooks?token=" + secret,
		"https://example.com/hooks?token=" + secret + "#frag",
		"https://exa mple.com/hooks?token=" + secret,
		"https://example.com/" + secret + "/" + strings.Repeat("a", MaxLength),
	} {
		err := ValidateURL(raw, false)
		if err == nil {
			t.Fatalf("ValidateURL(%q) = nil, want an error", raw)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ValidateURL(%q) = %q, which repeats the secret", raw, err)
		}
	}
}
