package receiver

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Algorithm names a signature scheme.
type Algorithm string

// The signature schemes of the Standard Webhooks specification.
const (
	// HMACSHA256 keys verify "v1" signature entries.
	HMACSHA256 Algorithm = "HMAC-SHA256"
	// Ed25519 keys verify "v1a" signature entries.
	Ed25519 Algorithm = "Ed25519"
)

const (
	secretPrefix     = "whsec_"
	privateKeyPrefix = "whsk_"
	publicKeyPrefix  = "whpk_"

	// MinSecretSize and MaxSecretSize bound HMAC secrets to the 24 to 64
	// bytes the Standard Webhooks specification allows, so that a
	// truncated secret is reported instead of silently matching nothing.
	MinSecretSize = 24
	MaxSecretSize = 64
)

var b64 = base64.StdEncoding

// Key is a key that verifies signatures: an HMAC-SHA256 secret or an
// Ed25519 public key. The zero Key verifies nothing. Copies share the same
// immutable material; compare keys by ID.
type Key struct {
	// The material sits behind a pointer so that even printing a struct
	// that embeds a Key, where fmt cannot reach our methods, shows an
	// address and never bytes.
	m *keyMaterial
}

type keyMaterial struct {
	alg    Algorithm
	secret []byte            // HMACSHA256
	public ed25519.PublicKey // Ed25519
	id     string
}

func newHMACKey(secret []byte) Key {
	return Key{m: &keyMaterial{alg: HMACSHA256, secret: secret, id: fingerprint(secret)}}
}

func newEd25519Key(public ed25519.PublicKey) Key {
	return Key{m: &keyMaterial{alg: Ed25519, public: public, id: fingerprint(public)}}
}

// fingerprint matches the key IDs Hookline shows in its status and logs, so
// an operator can tell which key a receiver holds.
func fingerprint(material []byte) string {
	sum := sha256.Sum256(material)
	return "k-" + hex.EncodeToString(sum[:8])
}

// ParseKey reads a key in one of the Standard Webhooks forms:
//
//   - "whsec_<base64>": an HMAC-SHA256 secret of 24 to 64 bytes; a bare
//     base64 secret is taken too, as other senders hand those out;
//   - "whpk_<base64>": a 32-byte Ed25519 public key;
//   - "whsk_<base64>": a 64-byte Ed25519 private key, of which only the
//     public half is kept, since a receiver never signs.
//
// Base64 is the standard alphabet with padding. Surrounding whitespace is
// ignored, as files and environment variables often end with a newline.
// Errors never quote the input.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return Key{}, errors.New("parse webhook key: empty")
	case strings.HasPrefix(s, publicKeyPrefix):
		raw, err := decodeKey(s[len(publicKeyPrefix):])
		if err != nil {
			return Key{}, fmt.Errorf("parse webhook key: %s %s public key: %w", publicKeyPrefix, Ed25519, err)
		}
		if len(raw) != ed25519.PublicKeySize {
			return Key{}, fmt.Errorf("parse webhook key: %s %s public key is %d bytes, want %d", publicKeyPrefix, Ed25519, len(raw), ed25519.PublicKeySize)
		}
		return newEd25519Key(ed25519.PublicKey(raw)), nil
	case strings.HasPrefix(s, privateKeyPrefix):
		raw, err := decodeKey(s[len(privateKeyPrefix):])
		if err != nil {
			return Key{}, fmt.Errorf("parse webhook key: %s %s private key: %w", privateKeyPrefix, Ed25519, err)
		}
		if len(raw) != ed25519.PrivateKeySize {
			return Key{}, fmt.Errorf("parse webhook key: %s %s private key is %d bytes, want %d", privateKeyPrefix, Ed25519, len(raw), ed25519.PrivateKeySize)
		}
		// The stored public half is redundant; if it does not belong to
		// the seed, the sender's signatures would not verify against it.
		derived := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize]).Public().(ed25519.PublicKey)
		if !bytes.Equal(derived, raw[ed25519.SeedSize:]) {
			return Key{}, fmt.Errorf("parse webhook key: %s %s private key: public half does not match the seed", privateKeyPrefix, Ed25519)
		}
		return newEd25519Key(derived), nil
	case strings.HasPrefix(s, secretPrefix):
		return parseSecret(s[len(secretPrefix):], secretPrefix+" "+string(HMACSHA256)+" secret")
	default:
		return parseSecret(s, "unprefixed "+string(HMACSHA256)+" secret")
	}
}

func parseSecret(s, form string) (Key, error) {
	secret, err := decodeKey(s)
	if err != nil {
		return Key{}, fmt.Errorf("parse webhook key: %s: %w", form, err)
	}
	if len(secret) < MinSecretSize || len(secret) > MaxSecretSize {
		return Key{}, fmt.Errorf("parse webhook key: %s is %d bytes, want %d to %d", form, len(secret), MinSecretSize, MaxSecretSize)
	}
	return newHMACKey(secret), nil
}

// decodeKey reports base64 errors by offset only: the base64 package's own
// messages are safe too, but this keeps the promise independent of them.
func decodeKey(s string) ([]byte, error) {
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

// Algorithm returns the key's signature scheme, or "" for the zero Key.
func (k Key) Algorithm() Algorithm {
	if k.m == nil {
		return ""
	}
	return k.m.alg
}

// IsZero reports whether k is the zero Key.
func (k Key) IsZero() bool { return k.m == nil }

// ID returns a fingerprint of the key that is safe to show: "k-" and 16 hex
// digits of the SHA-256 of the secret or public key. Hookline reports the
// same IDs for the keys it signs with.
func (k Key) ID() string {
	if k.m == nil {
		return ""
	}
	return k.m.id
}

// String identifies the key without revealing its material.
func (k Key) String() string {
	if k.m == nil {
		return "<no key>"
	}
	return string(k.m.alg) + " key " + k.m.id
}

// Format makes every fmt verb, %#v and %x included, print String, since
// the default formatting of the struct would otherwise be reachable.
func (k Key) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, k.String())
}

// LogValue keeps structured logs to the algorithm and ID.
func (k Key) LogValue() slog.Value {
	if k.m == nil {
		return slog.StringValue(k.String())
	}
	return slog.GroupValue(
		slog.String("algorithm", string(k.m.alg)),
		slog.String("id", k.m.id),
	)
}
