package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

// Standard Webhooks specification example.
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specBody      = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// countingReader yields 0, 1, 2, ... so generated keys are reproducible and
// distinct readers can be made to differ by their starting byte.
type countingReader struct{ next byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.next
		r.next++
	}
	return len(p), nil
}

var idPattern = regexp.MustCompile(`^k-[0-9a-f]{16}$`)

func mustGenerate(t *testing.T, alg Algorithm, random io.Reader) Key {
	t.Helper()
	k, err := Generate(alg, random)
	if err != nil {
		t.Fatalf("Generate(%s): %v", alg, err)
	}
	return k
}

func TestGenerateRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		alg        Algorithm
		random     io.Reader
		prefix     string
		rawLen     int
		wantPublic bool
	}{
		{HMACSHA256, &countingReader{}, "whsec_", 32, false},
		{HMACSHA256, rand.Reader, "whsec_", 32, false},
		{HMACSHA256, nil, "whsec_", 32, false},
		{Ed25519, &countingReader{}, "whsk_", 64, true},
		{Ed25519, rand.Reader, "whsk_", 64, true},
		{Ed25519, nil, "whsk_", 64, true},
	} {
		k := mustGenerate(t, tc.alg, tc.random)
		if k.Algorithm() != tc.alg {
			t.Errorf("Algorithm() = %q, want %q", k.Algorithm(), tc.alg)
		}
		if k.IsZero() {
			t.Errorf("generated %s key IsZero", tc.alg)
		}
		enc := k.Encoded()
		if !strings.HasPrefix(enc, tc.prefix) {
			t.Fatalf("Encoded() = %s..., want prefix %q", enc[:min(len(enc), 6)], tc.prefix)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(enc, tc.prefix))
		if err != nil || len(raw) != tc.rawLen {
			t.Errorf("%s Encoded() body decodes to %d bytes (err %v), want %d", tc.alg, len(raw), err, tc.rawLen)
		}
		if !idPattern.MatchString(k.ID()) {
			t.Errorf("ID() = %q, want k- and 16 hex digits", k.ID())
		}

		parsed, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse(Encoded()) of %s key: %v", tc.alg, err)
		}
		if parsed.Algorithm() != tc.alg || parsed.ID() != k.ID() || parsed.Encoded() != enc || parsed.PublicKey() != k.PublicKey() {
			t.Errorf("%s key changed across Encoded/Parse: %v -> %v", tc.alg, k, parsed)
		}
		if got, want := parsed.Sign("msg_1", 1, []byte("x")), k.Sign("msg_1", 1, []byte("x")); got != want {
			t.Errorf("%s parsed key signs differently", tc.alg)
		}
		if (k.PublicKey() != "") != tc.wantPublic {
			t.Errorf("%s PublicKey() = %q, want non-empty: %v", tc.alg, k.PublicKey(), tc.wantPublic)
		}
	}
}

func TestGenerateIsDeterministicInRandom(t *testing.T) {
	for _, alg := range []Algorithm{HMACSHA256, Ed25519} {
		a := mustGenerate(t, alg, &countingReader{})
		b := mustGenerate(t, alg, &countingReader{})
		c := mustGenerate(t, alg, &countingReader{next: 100})
		if a.ID() != b.ID() || a.Encoded() != b.Encoded() {
			t.Errorf("%s: same random stream gave different keys", alg)
		}
		if a.ID() == c.ID() || a.Encoded() == c.Encoded() {
			t.Errorf("%s: different random streams gave the same key", alg)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	readErr := errors.New("entropy exhausted")
	for _, tc := range []struct {
		name   string
		alg    Algorithm
		random io.Reader
		want   string
		is     error
	}{
		{"unknown algorithm", "RSA", &countingReader{}, `unsupported algorithm "RSA"`, nil},
		{"empty algorithm", "", &countingReader{}, `unsupported algorithm ""`, nil},
		{"lowercase algorithm", "hmac-sha256", &countingReader{}, "unsupported algorithm", nil},
		{"hmac reader error", HMACSHA256, iotest.ErrReader(readErr), "generate HMAC-SHA256 key", readErr},
		{"ed25519 reader error", Ed25519, iotest.ErrReader(readErr), "generate Ed25519 key", readErr},
		{"hmac short reader", HMACSHA256, bytes.NewReader(make([]byte, 10)), "generate HMAC-SHA256 key", io.ErrUnexpectedEOF},
		{"ed25519 short reader", Ed25519, bytes.NewReader(make([]byte, 10)), "generate Ed25519 key", io.ErrUnexpectedEOF},
	} {
		k, err := Generate(tc.alg, tc.random)
		if err == nil {
			t.Errorf("%s: Generate succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: error %q does not wrap %q", tc.name, err, tc.is)
		}
		if !k.IsZero() {
			t.Errorf("%s: non-zero Key returned with error", tc.name)
		}
	}
}

func TestIDMatchesDefinition(t *testing.T) {
	hk := mustGenerate(t, HMACSHA256, &countingReader{})
	secret, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(hk.Encoded(), "whsec_"))
	sum := sha256.Sum256(secret)
	if want := "k-" + hex.EncodeToString(sum[:])[:16]; hk.ID() != want {
		t.Errorf("HMAC ID() = %q, want %q", hk.ID(), want)
	}

	ek := mustGenerate(t, Ed25519, &countingReader{})
	pub, err := ParsePublicKey(ek.PublicKey())
	if err != nil {
		t.Fatalf("ParsePublicKey: %v", err)
	}
	sum = sha256.Sum256(pub)
	if want := "k-" + hex.EncodeToString(sum[:])[:16]; ek.ID() != want {
		t.Errorf("Ed25519 ID() = %q, want %q (over the public key)", ek.ID(), want)
	}

	spec, err := Parse(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	if want := specIDFromDefinition(t); spec.ID() != want {
		t.Errorf("spec key ID() = %q, want %q", spec.ID(), want)
	}
}

func specIDFromDefinition(t *testing.T) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(specSecret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return "k-" + hex.EncodeToString(sum[:8])
}

func TestIDStableAndDistinct(t *testing.T) {
	seen := map[string]Algorithm{}
	for _, alg := range []Algorithm{HMACSHA256, Ed25519} {
		for i := range 20 {
			k := mustGenerate(t, alg, rand.Reader)
			if prev, dup := seen[k.ID()]; dup {
				t.Fatalf("ID %s repeated (%s then %s, key %d)", k.ID(), prev, alg, i)
			}
			seen[k.ID()] = alg
			again, err := Parse(k.Encoded())
			if err != nil {
				t.Fatal(err)
			}
			if again.ID() != k.ID() || k.ID() != k.ID() {
				t.Errorf("%s ID not stable: %s vs %s", alg, k.ID(), again.ID())
			}
		}
	}
}

func TestSignHMACKnownAnswer(t *testing.T) {
	k, err := Parse(specSecret)
	if err != nil {
		t.Fatalf("Parse(spec secret): %v", err)
	}
	if k.Algorithm() != HMACSHA256 || k.PublicKey() != "" {
		t.Fatalf("spec secret parsed as %v with public key %q", k, k.PublicKey())
	}

	secret, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(specSecret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, secret)
	fmt.Fprintf(mac, "%s.%d.%s", specMsgID, specTimestamp, specBody)
	independent := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))

	got := k.Sign(specMsgID, specTimestamp, []byte(specBody))
	if got != independent {
		t.Errorf("Sign = %q, independent computation = %q", got, independent)
	}
	if got != specSignature {
		t.Errorf("Sign = %q, specification says %q", got, specSignature)
	}

	// The same secret without its prefix, as other libraries accept it.
	bare, err := Parse(strings.TrimPrefix(specSecret, "whsec_"))
	if err != nil {
		t.Fatalf("Parse(bare spec secret): %v", err)
	}
	if got := bare.Sign(specMsgID, specTimestamp, []byte(specBody)); got != specSignature {
		t.Errorf("bare secret Sign = %q, want %q", got, specSignature)
	}
	if bare.ID() != k.ID() || bare.Encoded() != specSecret {
		t.Errorf("bare secret parsed to a different key: %v, want %v", bare, k)
	}

	// Every input must contribute to the signature.
	for _, other := range []string{
		k.Sign(specMsgID+"x", specTimestamp, []byte(specBody)),
		k.Sign(specMsgID, specTimestamp+1, []byte(specBody)),
		k.Sign(specMsgID, specTimestamp, []byte(specBody+" ")),
	} {
		if other == got {
			t.Error("changing an input did not change the signature")
		}
	}
}

func TestSignEd25519Verifies(t *testing.T) {
	k := mustGenerate(t, Ed25519, rand.Reader)
	pub, err := ParsePublicKey(k.PublicKey())
	if err != nil {
		t.Fatalf("ParsePublicKey(PublicKey()): %v", err)
	}
	for _, tc := range []struct {
		msgID string
		ts    int64
		body  []byte
	}{
		{specMsgID, specTimestamp, []byte(specBody)},
		{"msg_2", 0, nil},
		{"msg_3", -1, []byte("{}")},
		{"", 9223372036854775807, bytes.Repeat([]byte("a"), 1<<16)},
		{"msg_4", -9223372036854775808, []byte("x")},
	} {
		entry := k.Sign(tc.msgID, tc.ts, tc.body)
		sigB64, ok := strings.CutPrefix(entry, "v1a,")
		if !ok {
			t.Fatalf("Sign = %q, want v1a, prefix", entry)
		}
		sig, err := base64.StdEncoding.DecodeString(sigB64)
		if err != nil || len(sig) != ed25519.SignatureSize {
			t.Fatalf("signature decodes to %d bytes (err %v)", len(sig), err)
		}
		content := []byte(fmt.Sprintf("%s.%d.%s", tc.msgID, tc.ts, tc.body))
		if !ed25519.Verify(pub, content, sig) {
			t.Errorf("signature over %q.%d does not verify", tc.msgID, tc.ts)
		}
		if ed25519.Verify(pub, append(content, '!'), sig) {
			t.Errorf("signature verified over altered content")
		}
	}
}

func TestZeroKey(t *testing.T) {
	var k Key
	if !k.IsZero() || k.ID() != "" || k.Encoded() != "" || k.PublicKey() != "" || k.Sign("m", 1, nil) != "" || k.Algorithm() != "" {
		t.Errorf("zero Key is not inert: %v", k)
	}
	if s := fmt.Sprint(k); s != "<no key>" {
		t.Errorf("zero Key prints as %q", s)
	}
}

func TestParse(t *testing.T) {
	good32 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	good24 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 24))
	good64 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 64))
	ed := mustGenerate(t, Ed25519, &countingReader{})
	for _, tc := range []struct {
		name string
		in   string
		alg  Algorithm
	}{
		{"whsec 32 bytes", "whsec_" + good32, HMACSHA256},
		{"whsec 24 bytes", "whsec_" + good24, HMACSHA256},
		{"whsec 64 bytes", "whsec_" + good64, HMACSHA256},
		{"spec example", specSecret, HMACSHA256},
		{"bare base64", good32, HMACSHA256},
		{"trailing newline", "whsec_" + good32 + "\n", HMACSHA256},
		{"surrounding spaces", "  " + good32 + " ", HMACSHA256},
		{"whsk", ed.Encoded(), Ed25519},
		{"whsk trailing newline", ed.Encoded() + "\r\n", Ed25519},
	} {
		k, err := Parse(tc.in)
		if err != nil {
			t.Errorf("%s: Parse: %v", tc.name, err)
			continue
		}
		if k.Algorithm() != tc.alg {
			t.Errorf("%s: Algorithm() = %q, want %q", tc.name, k.Algorithm(), tc.alg)
		}
	}
}

// invalidParseInputs are invalid encodings whose base64 bodies are long enough that
// finding them in a message cannot be a coincidence.
func invalidParseInputs(t *testing.T) []struct{ name, in, want, material string } {
	t.Helper()
	enc := base64.StdEncoding.EncodeToString
	short := enc(bytes.Repeat([]byte{0xA5}, 16))
	long := enc(bytes.Repeat([]byte{0x5A}, 65))
	ed := mustGenerate(t, Ed25519, &countingReader{})
	edRaw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(ed.Encoded(), "whsk_"))
	mismatched := bytes.Clone(edRaw)
	mismatched[40] ^= 1
	edBody := enc(edRaw)
	return []struct{ name, in, want, material string }{
		{"empty", "", "empty", ""},
		{"whitespace only", " \n\t", "empty", ""},
		{"bare prefix", "whsec_", "0 bytes, want 24 to 64", ""},
		{"whsec too short", "whsec_" + short, "whsec_ HMAC-SHA256 secret is 16 bytes, want 24 to 64", short},
		{"whsec too long", "whsec_" + long, "whsec_ HMAC-SHA256 secret is 65 bytes, want 24 to 64", long},
		{"bare too short", short, "unprefixed HMAC-SHA256 secret is 16 bytes", short},
		{"whsec bad base64", "whsec_" + short[:10] + "!!" + short[12:], "invalid base64 at byte 10", short[:10]},
		{"whsec url alphabet", "whsec_" + strings.Repeat("-_", 16), "invalid base64 at byte 0", strings.Repeat("-_", 16)},
		{"whsec missing padding", "whsec_" + strings.TrimRight(enc(bytes.Repeat([]byte{1}, 32)), "="), "invalid base64", strings.TrimRight(enc(bytes.Repeat([]byte{1}, 32)), "=")},
		{"not base64 at all", "this is not a key, obviously secret", "not a whsec_, whsk_ or base64 HMAC-SHA256 secret", "obviously secret"},
		{"wrong prefix case", "WHSEC_" + enc(bytes.Repeat([]byte{3}, 32)), "invalid base64", enc(bytes.Repeat([]byte{3}, 32))},
		{"whsk short", "whsk_" + enc(edRaw[:32]), "whsk_ Ed25519 private key is 32 bytes, want 64", enc(edRaw[:32])},
		{"whsk long", "whsk_" + enc(append(bytes.Clone(edRaw), 1, 2, 3)), "whsk_ Ed25519 private key is 67 bytes, want 64", edBody},
		{"whsk bad base64", "whsk_" + edBody[:20] + "$" + edBody[21:], "invalid base64 at byte 20", edBody[:20]},
		{"whsk mismatched public half", "whsk_" + enc(mismatched), "public half does not match the seed", enc(mismatched)},
		{"public key given", ed.PublicKey(), "Ed25519 public key (whpk_), which cannot sign", strings.TrimPrefix(ed.PublicKey(), "whpk_")},
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range invalidParseInputs(t) {
		k, err := Parse(tc.in)
		if err == nil {
			t.Errorf("%s: Parse succeeded", tc.name)
			continue
		}
		if !k.IsZero() {
			t.Errorf("%s: non-zero Key returned with error", tc.name)
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, msg, tc.want)
		}
		if tc.material != "" && strings.Contains(msg, tc.material) {
			t.Errorf("%s: error %q contains key material", tc.name, msg)
		}
		if tc.material != "" && strings.Contains(msg, strings.TrimSpace(tc.in)) {
			t.Errorf("%s: error %q contains the input", tc.name, msg)
		}
	}
}

func TestParsePublicKey(t *testing.T) {
	k := mustGenerate(t, Ed25519, &countingReader{})
	pub, err := ParsePublicKey(k.PublicKey())
	if err != nil {
		t.Fatalf("ParsePublicKey: %v", err)
	}
	seed, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(k.Encoded(), "whsk_"))
	if want := ed25519.NewKeyFromSeed(seed[:32]).Public().(ed25519.PublicKey); !want.Equal(pub) {
		t.Error("ParsePublicKey(PublicKey()) is not the key's public half")
	}
	if _, err := ParsePublicKey(k.PublicKey() + "\n"); err != nil {
		t.Errorf("ParsePublicKey with trailing newline: %v", err)
	}

	enc := base64.StdEncoding.EncodeToString
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "missing whpk_ prefix"},
		{"private key", k.Encoded(), "missing whpk_ prefix"},
		{"hmac secret", specSecret, "missing whpk_ prefix"},
		{"bare base64", enc(pub), "missing whpk_ prefix"},
		{"short", "whpk_" + enc(pub[:31]), "31 bytes, want 32"},
		{"long", "whpk_" + enc(append(bytes.Clone(pub), 0)), "33 bytes, want 32"},
		{"bad base64", "whpk_" + "%%%%", "invalid base64 at byte 0"},
	} {
		_, err := ParsePublicKey(tc.in)
		if err == nil {
			t.Errorf("%s: ParsePublicKey succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
		if tc.in != "" && strings.Contains(err.Error(), tc.in) {
			t.Errorf("%s: error %q contains the input", tc.name, err)
		}
	}
}

// Material must not leak however a Key reaches a log line.
func TestNoMaterialInOutput(t *testing.T) {
	for _, alg := range []Algorithm{HMACSHA256, Ed25519} {
		k := mustGenerate(t, alg, &countingReader{next: 0x41})
		body := k.Encoded()[strings.Index(k.Encoded(), "_")+1:]
		raw, _ := base64.StdEncoding.DecodeString(body)
		// The Ed25519 public half may legitimately appear; the seed may not.
		secret := raw
		if alg == Ed25519 {
			secret = raw[:ed25519.SeedSize]
		}
		forbidden := []string{
			body,
			body[:16],
			hex.EncodeToString(secret[:8]),
			string(secret[:8]),
			fmt.Sprint(secret[:4])[1:12],
		}

		type embedsExported struct{ K Key }
		type embedsUnexported struct{ k Key }
		var logBuf bytes.Buffer
		slog.New(slog.NewTextHandler(&logBuf, nil)).Info("key", "key", k)
		slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("key", "key", k)
		outputs := map[string]string{
			"String":     k.String(),
			"log":        logBuf.String(),
			"unexported": fmt.Sprintf("%v %+v %#v", embedsUnexported{k}, embedsUnexported{k}, embedsUnexported{k}),
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T", "%08b"} {
			outputs[verb] = fmt.Sprintf(verb, k)
			outputs[verb+" embedded"] = fmt.Sprintf(verb, embedsExported{k})
			outputs[verb+" pointer"] = fmt.Sprintf(verb, &k)
			outputs[verb+" slice"] = fmt.Sprintf(verb, []Key{k})
		}
		for name, out := range outputs {
			for _, f := range forbidden {
				if strings.Contains(out, f) {
					t.Errorf("%s %s output %q contains key material", alg, name, out)
				}
			}
		}
		if want := string(alg) + " key " + k.ID(); k.String() != want {
			t.Errorf("String() = %q, want %q", k.String(), want)
		}
		if !strings.Contains(logBuf.String(), k.ID()) {
			t.Errorf("log output %q does not identify the key", logBuf.String())
		}
	}
}
