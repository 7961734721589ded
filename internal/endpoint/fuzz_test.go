package endpoint

import (
	"errors"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// userInfoRE is the schema's user-info rule on spec.url, verbatim.
var userInfoRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@`)

func FuzzValidateURL(f *testing.F) {
	for _, v := range urlVectors {
		f.Add(v.raw, v.allow)
	}

	const secret = "Fuzz-S3cret-Value"
	f.Fuzz(func(t *testing.T, raw string, allowPlainHTTP bool) {
		err := ValidateURL(raw, allowPlainHTTP)
		errAllowed := ValidateURL(raw, true)

		// Allowing plain HTTP only ever accepts more, and exactly the http
		// URLs refused with ErrPlainHTTP.
		if errors.Is(err, ErrPlainHTTP) {
			if allowPlainHTTP {
				t.Fatalf("ValidateURL(%q, true) = ErrPlainHTTP", raw)
			}
			if errAllowed != nil {
				t.Fatalf("ValidateURL(%q) refused only plain HTTP, but with it allowed: %v", raw, errAllowed)
			}
		} else if (err == nil) != (errAllowed == nil) {
			t.Fatalf("ValidateURL(%q, %v) = %v but with plain HTTP allowed = %v", raw, allowPlainHTTP, err, errAllowed)
		}

		if err == nil {
			if n := utf8.RuneCountInString(raw); n > MaxLength {
				t.Fatalf("accepted a %d-character URL", n)
			}
			u, perr := url.Parse(raw)
			if perr != nil {
				t.Fatalf("accepted %q, which does not parse: %v", raw, perr)
			}
			if u.Scheme != "https" && !(u.Scheme == "http" && allowPlainHTTP) {
				t.Fatalf("accepted scheme %q of %q with allowPlainHTTP=%v", u.Scheme, raw, allowPlainHTTP)
			}
			if u.Hostname() == "" || u.User != nil || strings.Contains(raw, "#") || userInfoRE.MatchString(raw) {
				t.Fatalf("accepted %q (host %q, user info %v)", raw, u.Hostname(), u.User != nil)
			}
			// The host a resolver sees is ASCII, so it cannot be mapped to
			// an address the check never saw, and the port can be dialled.
			for _, r := range u.Hostname() {
				if r >= utf8.RuneSelf {
					t.Fatalf("accepted %q with the non-ASCII host %q", raw, u.Hostname())
				}
			}
			if p := u.Port(); p != "" {
				if n, perr := strconv.Atoi(p); perr != nil || n < 1 || n > 65535 {
					t.Fatalf("accepted %q with port %q", raw, p)
				}
			}
		}

		// Credentials put into the user info are refused and never repeated.
		if i := strings.Index(raw, "://"); i >= 0 {
			withCreds := raw[:i+3] + "user:" + secret + "@" + raw[i+3:]
			cerr := ValidateURL(withCreds, allowPlainHTTP)
			if cerr == nil {
				t.Fatalf("accepted %q, which carries user info", withCreds)
			}
			if strings.Contains(cerr.Error(), secret) {
				t.Fatalf("ValidateURL(%q) = %q, which repeats the password", withCreds, cerr)
			}
		}
	})
}
