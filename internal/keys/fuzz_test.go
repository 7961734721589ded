package keys

import (
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add(specSecret)
	f.Add(strings.TrimPrefix(specSecret, "whsec_"))
	f.Add("whsec_")
	f.Add("whsk_")
	f.Add("whpk_")
	f.Add("")
	f.Add("whsec_" + strings.Repeat("A", 44))
	f.Add("whsk_" + strings.Repeat("A", 86) + "==")
	f.Add("whpk_" + strings.Repeat("A", 43) + "=")
	f.Add("whsec_!!!!")
	f.Add(" whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")

	f.Fuzz(func(t *testing.T, in string) {
		k, err := Parse(in)
		if err != nil {
			if !k.IsZero() {
				t.Fatalf("Parse returned a non-zero Key with error %v", err)
			}
			// Short inputs can coincide with fixed message text; anything
			// longer appearing in the message would be echoed input.
			body := strings.TrimSpace(in)
			if i := strings.IndexByte(body, '_'); i >= 0 && i < 6 {
				body = body[i+1:]
			}
			if len(body) >= 16 && strings.Contains(err.Error(), body) {
				t.Fatalf("Parse error %q echoes its input", err)
			}
		} else {
			again, err := Parse(k.Encoded())
			if err != nil {
				t.Fatalf("Parse(Encoded()) failed after Parse succeeded: %v", err)
			}
			if again.ID() != k.ID() || again.Algorithm() != k.Algorithm() || again.Encoded() != k.Encoded() {
				t.Fatalf("key changed across Encoded/Parse: %v -> %v", k, again)
			}
			if s := k.String(); strings.Contains(s, k.Encoded()[strings.IndexByte(k.Encoded(), '_')+1:]) {
				t.Fatalf("String() %q contains material", s)
			}
			_ = k.Sign("msg", 0, []byte(in))
		}

		if pub, err := ParsePublicKey(in); err == nil && len(pub) != 32 {
			t.Fatalf("ParsePublicKey returned %d bytes", len(pub))
		}
	})
}
