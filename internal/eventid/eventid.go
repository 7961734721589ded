// Package eventid is the one rule for event ids, which ingest applies to
// what producers send and the queue to what it stores: 1 to MaxLength
// characters from A-Z a-z 0-9 and . _ ~ : -.
//
// An id travels as a NATS message id and header and as the webhook-id
// header of every delivery, and it is signed as the first part of
// "<id>.<timestamp>.<body>": the narrow alphabet keeps it one token in every
// one of them. Ids Hookline makes itself (UUIDv7 with a prefix) follow it
// too. The receiver SDK (pkg/receiver) accepts a wider set, what any
// Standard Webhooks sender may send, of which this is a subset.
package eventid

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxLength is the longest event id, in characters (all ASCII).
const MaxLength = 128

// Allowed describes the alphabet, for messages and documentation.
const Allowed = "A-Z a-z 0-9 and . _ ~ : -"

// ValidByte says whether c may appear in an event id.
func ValidByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '~' || c == ':' || c == '-'
}

// InvalidCharError is the error for a character outside the alphabet; its
// message names the character and its 1-based position, not the id.
type InvalidCharError struct {
	Char     rune
	Position int
}

func (e *InvalidCharError) Error() string {
	return fmt.Sprintf("invalid character %q at position %d, allowed are %s", e.Char, e.Position, Allowed)
}

// Validate reports why id is not an acceptable event id, or nil.
func Validate(id string) error {
	if id == "" {
		return errors.New("must not be empty")
	}
	if len(id) > MaxLength {
		return fmt.Errorf("is %d characters long, maximum is %d", len(id), MaxLength)
	}
	for i := 0; i < len(id); i++ {
		if !ValidByte(id[i]) {
			r, _ := utf8.DecodeRuneInString(id[i:])
			return &InvalidCharError{Char: r, Position: i + 1}
		}
	}
	return nil
}
