package receiver

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The header names of the Standard Webhooks specification.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far webhook-timestamp may be from the receiver's
// clock, in either direction, when no other tolerance is set. It is the
// value the Standard Webhooks libraries use.
const DefaultTolerance = 5 * time.Minute

// The verification errors. Verify wraps exactly one of them, with details,
// so callers can tell them apart with errors.Is.
var (
	// ErrMissingHeader: one of the three webhook headers is absent or
	// empty; the message names it.
	ErrMissingHeader = errors.New("missing header")
	// ErrInvalidID: webhook-id is repeated, longer than MaxIDLength or has
	// a character outside A-Z a-z 0-9 and . _ ~ : - + / = @.
	ErrInvalidID = errors.New("invalid " + HeaderID)
	// ErrInvalidTimestamp: webhook-timestamp is repeated or is not a
	// decimal number of seconds without sign or leading zeros.
	ErrInvalidTimestamp = errors.New("invalid " + HeaderTimestamp)
	// ErrTooOld: webhook-timestamp is more than the tolerance before now.
	ErrTooOld = errors.New("timestamp too old")
	// ErrTooNew: webhook-timestamp is more than the tolerance after now.
	ErrTooNew = errors.New("timestamp too new")
	// ErrInvalidSignatureHeader: webhook-signature is repeated, too long,
	// has more than MaxSignatureEntries entries, or has no entry of the
	// form "<version>,<base64>".
	ErrInvalidSignatureHeader = errors.New("invalid " + HeaderSignature)
	// ErrNoMatchingSignature: no signature entry matches any of the keys.
	ErrNoMatchingSignature = errors.New("no matching signature")
	// ErrNoKeys: Verify was given no usable key.
	ErrNoKeys = errors.New("no verification keys")
	// ErrWrongKeyKind: no signature matches because none of the keys is
	// of a kind the request's signatures need (HMAC keys, "whsec_", check
	// v1 signatures; Ed25519 public keys, "whpk_", check v1a ones). It
	// wraps ErrNoMatchingSignature, so errors.Is finds that too.
	ErrWrongKeyKind = fmt.Errorf("%w: no key of the kind the signatures need", ErrNoMatchingSignature)
)

// signatureVersions maps a signature entry's version to the algorithm of
// the keys that check it.
var signatureVersions = map[string]Algorithm{"v1": HMACSHA256, "v1a": Ed25519}

const (
	// MaxIDLength bounds webhook-id.
	MaxIDLength = 256
	// MaxSignatureEntries bounds the entries of webhook-signature that are
	// examined, so that a request cannot make the receiver run thousands
	// of Ed25519 verifications. Senders add one entry per key, and rarely
	// hold more than two keys at once.
	MaxSignatureEntries = 32
	// maxSignatureHeaderBytes is generous for MaxSignatureEntries Ed25519
	// entries and refuses absurd values before any parsing.
	maxSignatureHeaderBytes = 8 << 10
	maxVersionLength        = 16
	maxSignatureLength      = 512
	// maxTimestampDigits keeps the value within int64.
	maxTimestampDigits = 18
)

// Verifier checks the signature and timestamp of deliveries. The zero
// Verifier uses DefaultTolerance and the system clock.
type Verifier struct {
	// Tolerance is how far webhook-timestamp may be from Now, in either
	// direction. Zero or less means DefaultTolerance: the check cannot be
	// turned off, as it is what makes a captured request useless later.
	Tolerance time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Verify checks a delivery with the zero Verifier: see Verifier.Verify.
func Verify(header http.Header, body []byte, keys []Key) error {
	return Verifier{}.Verify(header, body, keys)
}

// Verify checks that header carries webhook-id, webhook-timestamp within
// the tolerance of now, and a webhook-signature entry that one of keys
// verifies over "<id>.<timestamp>.<body>". Entries of versions other than
// v1 and v1a are skipped, as are malformed entries beside well-formed ones,
// so that senders can add new schemes. HMAC signatures are compared in
// constant time.
//
// header is read as net/http stores it (canonical names), and each of the
// three headers must appear once: a repeated one is refused rather than
// guessed at. body must be the request body exactly as received.
//
// The error wraps one of ErrMissingHeader, ErrInvalidID,
// ErrInvalidTimestamp, ErrTooOld, ErrTooNew, ErrInvalidSignatureHeader,
// ErrNoMatchingSignature or ErrNoKeys, and never holds key material.
func (v Verifier) Verify(header http.Header, body []byte, keys []Key) error {
	_, err := v.verify(header, body, keys)
	return err
}

// verify is Verify that also returns the verified webhook-timestamp.
func (v Verifier) verify(header http.Header, body []byte, keys []Key) (time.Time, error) {
	id, err := single(header, HeaderID, ErrInvalidID)
	if err != nil {
		return time.Time{}, err
	}
	tsText, err := single(header, HeaderTimestamp, ErrInvalidTimestamp)
	if err != nil {
		return time.Time{}, err
	}
	sigHeader, err := single(header, HeaderSignature, ErrInvalidSignatureHeader)
	if err != nil {
		return time.Time{}, err
	}
	if err := checkID(id); err != nil {
		return time.Time{}, err
	}
	ts, err := parseTimestamp(tsText)
	if err != nil {
		return time.Time{}, err
	}
	if err := v.checkTimestamp(ts); err != nil {
		return time.Time{}, err
	}
	entries, err := parseSignatureHeader(sigHeader)
	if err != nil {
		return time.Time{}, err
	}
	usable := 0
	for _, k := range keys {
		if !k.IsZero() {
			usable++
		}
	}
	if usable == 0 {
		return time.Time{}, fmt.Errorf("verify webhook: %w", ErrNoKeys)
	}
	if matchAny(entries, keys, id, tsText, body) {
		return ts, nil
	}
	if present, given, wrong := keyKindMismatch(entries, keys); wrong {
		return time.Time{}, fmt.Errorf("verify webhook: %w: the request is signed with %s, the keys given are %s",
			ErrWrongKeyKind, strings.Join(present, " and "), strings.Join(given, " and "))
	}
	return time.Time{}, fmt.Errorf("verify webhook: %w: %d signature entries checked against %d keys",
		ErrNoMatchingSignature, len(entries), usable)
}

// keyKindMismatch says whether no key is of a kind any signature entry
// needs, with the kinds present and given ("HMAC-SHA256 (v1)", ...), in a
// stable order. Entries of versions no key kind checks are left out.
func keyKindMismatch(entries []signatureEntry, keys []Key) (present, given []string, wrong bool) {
	needed := map[Algorithm]bool{}
	for _, e := range entries {
		if alg, ok := signatureVersions[e.version]; ok {
			needed[alg] = true
		}
	}
	have := map[Algorithm]bool{}
	for _, k := range keys {
		if !k.IsZero() {
			have[k.m.alg] = true
		}
	}
	fits := false
	for _, alg := range []Algorithm{HMACSHA256, Ed25519} {
		if needed[alg] {
			present = append(present, string(alg)+" ("+versionOf(alg)+")")
			fits = fits || have[alg]
		}
		if have[alg] {
			given = append(given, string(alg))
		}
	}
	return present, given, len(present) > 0 && !fits
}

func versionOf(alg Algorithm) string {
	for v, a := range signatureVersions {
		if a == alg {
			return v
		}
	}
	return ""
}

// single returns the one value of a required header.
func single(header http.Header, name string, repeated error) (string, error) {
	values := header.Values(name)
	switch {
	case len(values) == 0 || values[0] == "":
		return "", fmt.Errorf("verify webhook: %w: %s", ErrMissingHeader, name)
	case len(values) > 1:
		return "", fmt.Errorf("verify webhook: %w: header appears %d times", repeated, len(values))
	}
	return values[0], nil
}

// checkID limits webhook-id to the characters that Standard Webhooks
// senders make IDs of: Hookline's (up to 128 of A-Z a-z 0-9 . _ ~ : -, the
// rule of its ingest API), UUIDs, base64 and prefixed random IDs such as
// "msg_..."; up to MaxIDLength of A-Z a-z 0-9 and . _ ~ : - + / = @. The
// SDK verifies any Standard Webhooks sender's deliveries, so it accepts
// this wider set rather than only Hookline's. The specification
// warns that the signed content "<id>.<timestamp>.<body>" can be split in
// more than one way when the ID holds a full stop; Hookline's IDs may, so
// full stops are accepted, but excluding '{' and whitespace means no split
// can make a JSON object body out of another message's ID and timestamp,
// which Middleware relies on.
func checkID(id string) error {
	if len(id) > MaxIDLength {
		return fmt.Errorf("verify webhook: %w: %d bytes long, maximum is %d", ErrInvalidID, len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if !validIDByte(id[i]) {
			return fmt.Errorf("verify webhook: %w: invalid character at position %d", ErrInvalidID, i)
		}
	}
	return nil
}

func validIDByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	default:
		return strings.IndexByte("._~:-+/=@", c) >= 0
	}
}

// parseTimestamp accepts only the canonical decimal form, which is the
// form senders write. Signatures cover the header text, so accepting
// "+1700000000" or "01700000000" would verify content that other
// implementations, which sign the number, never produce.
func parseTimestamp(s string) (time.Time, error) {
	if len(s) > maxTimestampDigits {
		return time.Time{}, fmt.Errorf("verify webhook: %w: more than %d digits", ErrInvalidTimestamp, maxTimestampDigits)
	}
	if s != "0" && s[0] == '0' {
		return time.Time{}, fmt.Errorf("verify webhook: %w: leading zero", ErrInvalidTimestamp)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, fmt.Errorf("verify webhook: %w: want Unix seconds, got a non-digit at position %d", ErrInvalidTimestamp, i)
		}
	}
	secs, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// Unreachable with at most 18 digits, kept for safety.
		return time.Time{}, fmt.Errorf("verify webhook: %w: %w", ErrInvalidTimestamp, err)
	}
	return time.Unix(secs, 0), nil
}

func (v Verifier) tolerance() time.Duration {
	if v.Tolerance <= 0 {
		return DefaultTolerance
	}
	return v.Tolerance
}

func (v Verifier) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

// checkTimestamp uses the same bounds as the reference library: exactly
// the tolerance away is still accepted.
func (v Verifier) checkTimestamp(ts time.Time) error {
	now, tol := v.now(), v.tolerance()
	switch d := now.Sub(ts); {
	case d > tol:
		return fmt.Errorf("verify webhook: %w: %s before now, tolerance is %s", ErrTooOld, d.Truncate(time.Second), tol)
	case -d > tol:
		return fmt.Errorf("verify webhook: %w: %s after now, tolerance is %s", ErrTooNew, (-d).Truncate(time.Second), tol)
	}
	return nil
}

// signatureEntry is one well-formed entry of webhook-signature.
type signatureEntry struct {
	version string
	value   string
}

// parseSignatureHeader splits webhook-signature into its well-formed
// entries. Entries are separated by single spaces; extra spaces make empty
// entries, which are skipped, and so are malformed ones as long as one
// entry is well-formed: that is how the reference library reads the
// header. Unknown versions are returned, for the caller to skip.
func parseSignatureHeader(h string) ([]signatureEntry, error) {
	if len(h) > maxSignatureHeaderBytes {
		return nil, fmt.Errorf("verify webhook: %w: %d bytes long, maximum is %d", ErrInvalidSignatureHeader, len(h), maxSignatureHeaderBytes)
	}
	var entries []signatureEntry
	seen := 0
	for raw := range strings.SplitSeq(h, " ") {
		if raw == "" {
			continue
		}
		seen++
		if seen > MaxSignatureEntries {
			return nil, fmt.Errorf("verify webhook: %w: more than %d entries", ErrInvalidSignatureHeader, MaxSignatureEntries)
		}
		version, value, ok := strings.Cut(raw, ",")
		if ok && validVersion(version) && validSignatureValue(value) {
			entries = append(entries, signatureEntry{version: version, value: value})
		}
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("verify webhook: %w: no entry of the form <version>,<base64 signature>", ErrInvalidSignatureHeader)
	}
	return entries, nil
}

func validVersion(s string) bool {
	if s == "" || len(s) > maxVersionLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validSignatureValue(s string) bool {
	if s == "" || len(s) > maxSignatureLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// matchAny reports whether any entry verifies with any key.
func matchAny(entries []signatureEntry, keys []Key, id, ts string, body []byte) bool {
	var signed []byte // built once, for Ed25519 only
	for _, k := range keys {
		if k.IsZero() {
			continue
		}
		switch k.m.alg {
		case HMACSHA256:
			mac := hmac.New(sha256.New, k.m.secret)
			mac.Write([]byte(id))
			mac.Write([]byte{'.'})
			mac.Write([]byte(ts))
			mac.Write([]byte{'.'})
			mac.Write(body)
			// Comparing the base64 text, as the reference library does,
			// rather than decoded bytes keeps the two in agreement on
			// which headers are valid.
			want := []byte(b64.EncodeToString(mac.Sum(nil)))
			for _, e := range entries {
				if e.version == "v1" && hmac.Equal([]byte(e.value), want) {
					return true
				}
			}
		case Ed25519:
			for _, e := range entries {
				if e.version != "v1a" {
					continue
				}
				// Strict decoding refuses non-zero padding bits, so each
				// signature has a single textual form.
				sig, err := b64.Strict().DecodeString(e.value)
				if err != nil || len(sig) != ed25519.SignatureSize {
					continue
				}
				if signed == nil {
					signed = make([]byte, 0, len(id)+len(ts)+len(body)+2)
					signed = append(signed, id...)
					signed = append(signed, '.')
					signed = append(signed, ts...)
					signed = append(signed, '.')
					signed = append(signed, body...)
				}
				if ed25519.Verify(k.m.public, signed, sig) {
					return true
				}
			}
		}
	}
	return false
}
