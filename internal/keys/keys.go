// Package keys generates, encodes, parses and uses webhook signing keys in
// the Standard Webhooks formats:
//
//   - HMAC-SHA256 secret: "whsec_" + base64 of the secret bytes;
//   - Ed25519 private key: "whsk_" + base64 of the 64-byte private key
//     (seed followed by public key);
//   - Ed25519 public key: "whpk_" + base64 of the 32-byte public key.
//
// Base64 is the standard alphabet with padding. A Key never renders its
// material through fmt, log/slog or error values; only Encoded does.
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
	"strconv"
	"strings"
)

// Algorithm names a signing scheme.
type Algorithm string

// The supported algorithms; the values are the names used in the API.
const (
	HMACSHA256 Algorithm = "HMAC-SHA256"
	Ed25519    Algorithm = "Ed25519"
)

const (
	secretPrefix     = "whsec_"
	privateKeyPrefix = "whsk_"
	publicKeyPrefix  = "whpk_"

	// GeneratedSecretSize is the number of random bytes in a generated
	// HMAC secret.
	GeneratedSecretSize = 32
	// MinSecretSize and MaxSecretSize bound accepted HMAC secrets to the
	// range the Standard Webhooks specification recommends, so that
	// secrets from other providers (its own example uses 24 bytes) still
	// parse while trivially short ones are refused.
	MinSecretSize = 24
	MaxSecretSize = 64
)

var b64 = base64.StdEncoding

// Key is a signing key. The zero Key is not usable: it has no ID and signs
// nothing. Copies of a Key share its (immutable) material; compare keys by
// ID, not with ==.
type Key struct {
	alg Algorithm
	// The material sits behind a pointer so that even reflection-based
	// printing of a struct embedding a Key (where fmt cannot call our
	// methods on an unexported field) shows an address, not bytes.
	m *material
}

type material struct {
	secret []byte             // HMAC-SHA256
	priv   ed25519.PrivateKey // Ed25519
	id     string
}

func newHMAC(secret []byte) Key {
	sum := sha256.Sum256(secret)
	return Key{alg: HMACSHA256, m: &material{secret: secret, id: fingerprint(sum)}}
}

func newEd25519(priv ed25519.PrivateKey) Key {
	sum := sha256.Sum256(priv[ed25519.SeedSize:])
	return Key{alg: Ed25519, m: &material{priv: priv, id: fingerprint(sum)}}
}

func fingerprint(sum [sha256.Size]byte) string {
	return "k-" + hex.EncodeToString(sum[:8])
}

// Generate creates a new key for alg, reading entropy from random. A nil
// random means crypto/rand.Reader.
func Generate(alg Algorithm, random io.Reader) (Key, error) {
	if random == nil {
		random = rand.Reader
	}
	switch alg {
	case HMACSHA256:
		secret := make([]byte, GeneratedSecretSize)
		if _, err := io.ReadFull(random, secret); err != nil {
			return Key{}, fmt.Errorf("generate %s key: read random bytes: %w", alg, err)
		}
		return newHMAC(secret), nil
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(random)
		if err != nil {
			return Key{}, fmt.Errorf("generate %s key: %w", alg, err)
		}
		return newEd25519(priv), nil
	default:
		return Key{}, fmt.Errorf("generate key: unsupported algorithm %q", alg)
	}
}

// Parse decodes a key from its "whsec_" or "whsk_" form. Like the Standard
// Webhooks libraries, it also takes an HMAC secret given as bare base64.
// Surrounding whitespace is ignored, since secrets are often stored with a
// trailing newline. Errors never include the input.
func Parse(encoded string) (Key, error) {
	s := strings.TrimSpace(encoded)
	switch {
	case s == "":
		return Key{}, errors.New("parse signing key: empty")
	case strings.HasPrefix(s, privateKeyPrefix):
		return parseEd25519(s[len(privateKeyPrefix):])
	case strings.HasPrefix(s, publicKeyPrefix):
		return Key{}, errors.New("parse signing key: got an Ed25519 public key (" + publicKeyPrefix + "), which cannot sign")
	case strings.HasPrefix(s, secretPrefix):
		return parseHMAC(s[len(secretPrefix):], true)
	default:
		return parseHMAC(s, false)
	}
}

func parseHMAC(s string, prefixed bool) (Key, error) {
	form := "unprefixed " + string(HMACSHA256) + " secret"
	if prefixed {
		form = secretPrefix + " " + string(HMACSHA256) + " secret"
	}
	secret, err := decode(s)
	if err != nil {
		if !prefixed {
			return Key{}, fmt.Errorf("parse signing key: not a %s, %s or base64 %s secret: %w", secretPrefix, privateKeyPrefix, HMACSHA256, err)
		}
		return Key{}, fmt.Errorf("parse signing key: %s: %w", form, err)
	}
	if len(secret) < MinSecretSize || len(secret) > MaxSecretSize {
		return Key{}, fmt.Errorf("parse signing key: %s is %d bytes, want %d to %d", form, len(secret), MinSecretSize, MaxSecretSize)
	}
	return newHMAC(secret), nil
}

func parseEd25519(s string) (Key, error) {
	raw, err := decode(s)
	if err != nil {
		return Key{}, fmt.Errorf("parse signing key: %s %s private key: %w", privateKeyPrefix, Ed25519, err)
	}
	if len(raw) != ed25519.PrivateKeySize {
		return Key{}, fmt.Errorf("parse signing key: %s %s private key is %d bytes, want %d", privateKeyPrefix, Ed25519, len(raw), ed25519.PrivateKeySize)
	}
	// The public half is stored redundantly; if it does not belong to the
	// seed, signatures would not verify against the key we publish.
	priv := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
	if !bytes.Equal(priv[ed25519.SeedSize:], raw[ed25519.SeedSize:]) {
		return Key{}, fmt.Errorf("parse signing key: %s %s private key: public half does not match the seed", privateKeyPrefix, Ed25519)
	}
	return newEd25519(priv), nil
}

// ParsePublicKey decodes an Ed25519 public key from its "whpk_" form.
func ParsePublicKey(encoded string) (ed25519.PublicKey, error) {
	s := strings.TrimSpace(encoded)
	if !strings.HasPrefix(s, publicKeyPrefix) {
		return nil, fmt.Errorf("parse public key: missing %s prefix", publicKeyPrefix)
	}
	raw, err := decode(s[len(publicKeyPrefix):])
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("parse public key: %d bytes, want %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// decode wraps base64 errors so they carry only an offset, never input.
func decode(s string) ([]byte, error) {
	raw, err := b64.DecodeString(s)
	if err != nil {
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			return nil, fmt.Errorf("invalid base64 at byte %d", int64(corrupt))
		}
		return nil, errors.New("invalid base64")
	}
	return raw, nil
}

// Algorithm returns the key's signing scheme.
func (k Key) Algorithm() Algorithm { return k.alg }

// IsZero reports whether k is the zero Key.
func (k Key) IsZero() bool { return k.m == nil }

// ID returns a fingerprint of the key that is safe to publish, so that
// receivers and operators can tell which key signed a message. For Ed25519
// it is derived from the public key only.
func (k Key) ID() string {
	if k.m == nil {
		return ""
	}
	return k.m.id
}

// Encoded returns the secret form of the key ("whsec_..." or "whsk_..."),
// suitable for storing in a Kubernetes Secret and for Parse.
func (k Key) Encoded() string {
	switch {
	case k.m == nil:
		return ""
	case k.alg == HMACSHA256:
		return secretPrefix + b64.EncodeToString(k.m.secret)
	default:
		return privateKeyPrefix + b64.EncodeToString(k.m.priv)
	}
}

// PublicKey returns the "whpk_..." form of an Ed25519 key's public half, or
// "" for HMAC keys, which have nothing that can be published.
func (k Key) PublicKey() string {
	if k.m == nil || k.alg != Ed25519 {
		return ""
	}
	return publicKeyPrefix + b64.EncodeToString(k.m.priv[ed25519.SeedSize:])
}

// String identifies the key without revealing material.
func (k Key) String() string {
	if k.m == nil {
		return "<no key>"
	}
	return string(k.alg) + " key " + k.m.id
}

// Format makes every fmt verb, including %#v, %x and %d, print String: the
// default struct formatting would otherwise be reachable for some verbs.
func (k Key) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, k.String())
}

// LogValue keeps structured logs to the algorithm and ID.
func (k Key) LogValue() slog.Value {
	if k.m == nil {
		return slog.StringValue(k.String())
	}
	return slog.GroupValue(
		slog.String("algorithm", string(k.alg)),
		slog.String("id", k.m.id),
	)
}

// Sign returns the Standard Webhooks signature entry for a message:
// "v1,<base64 HMAC-SHA256>" or "v1a,<base64 Ed25519 signature>", computed
// over "msgID.timestamp.body". The zero Key returns "".
func (k Key) Sign(msgID string, timestamp int64, body []byte) string {
	if k.m == nil {
		return ""
	}
	var ts [20]byte
	tsBytes := strconv.AppendInt(ts[:0], timestamp, 10)
	if k.alg == HMACSHA256 {
		// Feeding the parts separately avoids copying the body.
		mac := hmac.New(sha256.New, k.m.secret)
		mac.Write([]byte(msgID))
		mac.Write([]byte{'.'})
		mac.Write(tsBytes)
		mac.Write([]byte{'.'})
		mac.Write(body)
		return "v1," + b64.EncodeToString(mac.Sum(nil))
	}
	msg := make([]byte, 0, len(msgID)+len(tsBytes)+len(body)+2)
	msg = append(msg, msgID...)
	msg = append(msg, '.')
	msg = append(msg, tsBytes...)
	msg = append(msg, '.')
	msg = append(msg, body...)
	return "v1a," + b64.EncodeToString(ed25519.Sign(k.m.priv, msg))
}
