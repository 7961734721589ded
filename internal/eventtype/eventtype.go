// Package eventtype validates event type names and matches them against
// subscription patterns.
//
// An event type is a dot-separated list of segments such as
// "invoice.payment.failed". Each segment is 1 to 64 characters from
// [A-Za-z0-9_-]. A pattern uses the same grammar, except that a segment may
// also be "*", which matches exactly one segment, or, as the last segment
// only, ">", which matches one or more remaining segments. Event types and
// patterns are at most 255 characters. Matching is case-sensitive.
package eventtype

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

const (
	// MaxLength is the maximum length of an event type or pattern.
	MaxLength = 255
	// MaxSegmentLength is the maximum length of a single segment.
	MaxSegmentLength = 64
)

// PatternRegexp accepts exactly the pattern grammar except the overall
// MaxLength limit, which a schema expresses separately (maxLength). It is
// kept to the common subset of RE2 and ECMA-262 so that it can be used
// verbatim in a CRD validation marker.
const PatternRegexp = `^(?:(?:[A-Za-z0-9_-]{1,64}|\*)\.)*(?:[A-Za-z0-9_-]{1,64}|\*|>)$`

const (
	wildcardOne  = "*"
	wildcardTail = ">"
)

// ValidatePattern reports why p is not a valid subscription pattern, or nil
// if it is. Segment positions in error messages are 1-based.
func ValidatePattern(p string) error {
	return validate("event type pattern", p, true)
}

// ValidateType reports why t is not a valid concrete event type, or nil if it
// is. Segment positions in error messages are 1-based.
func ValidateType(t string) error {
	return validate("event type", t, false)
}

func validate(what, s string, wildcards bool) error {
	// Checked first so that the rest of the work is bounded, and so that an
	// oversized input is not echoed back in full.
	if len(s) > MaxLength {
		return fmt.Errorf("%s is %d characters long, maximum is %d", what, len(s), MaxLength)
	}
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	nseg := strings.Count(s, ".") + 1
	pos := 0
	for seg := range strings.SplitSeq(s, ".") {
		pos++
		if seg == "" {
			return fmt.Errorf("%s %q: empty segment at position %d", what, s, pos)
		}
		if seg == wildcardOne || seg == wildcardTail {
			if !wildcards {
				return fmt.Errorf("%s %q: wildcard %q in segment %d is only allowed in patterns", what, s, seg, pos)
			}
			if seg == wildcardTail && pos != nseg {
				return fmt.Errorf("%s %q: %q must be the last segment, found at segment %d of %d", what, s, seg, pos, nseg)
			}
			continue
		}
		for i, r := range seg {
			if validSegmentRune(r) {
				continue
			}
			if r == '*' || r == '>' {
				if !wildcards {
					return fmt.Errorf("%s %q: wildcard %q in segment %d is only allowed in patterns", what, s, r, pos)
				}
				return fmt.Errorf("%s %q: wildcard %q in segment %d must be the whole segment", what, s, r, pos)
			}
			// A literal U+FFFD and an undecodable byte both arrive as
			// RuneError; only the latter should be reported as a raw byte.
			if r == utf8.RuneError && !strings.HasPrefix(seg[i:], string(utf8.RuneError)) {
				return fmt.Errorf("%s %q: invalid byte 0x%02x in segment %d", what, s, seg[i], pos)
			}
			return fmt.Errorf("%s %q: invalid character %q in segment %d", what, s, r, pos)
		}
		if len(seg) > MaxSegmentLength {
			return fmt.Errorf("%s %q: segment %d is %d characters long, maximum is %d", what, s, pos, len(seg), MaxSegmentLength)
		}
	}
	return nil
}

func validSegmentRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-'
}

// Pattern is a compiled subscription pattern. The zero Pattern matches
// nothing.
type Pattern struct {
	src  string
	segs []string
	// tail records a trailing ">" so that Match need not compare strings
	// to detect it.
	tail bool
}

// Compile validates p and prepares it for matching.
func Compile(p string) (Pattern, error) {
	if err := ValidatePattern(p); err != nil {
		return Pattern{}, err
	}
	segs := strings.Split(p, ".")
	tail := segs[len(segs)-1] == wildcardTail
	if tail {
		segs = segs[:len(segs)-1]
	}
	return Pattern{src: p, segs: segs, tail: tail}, nil
}

// String returns the pattern as it was written.
func (p Pattern) String() string { return p.src }

// Match reports whether eventType is selected by p. It does not validate
// eventType (that is done once, where events enter the system) but never
// lets a wildcard match an empty segment, so malformed types such as "a..b"
// are not selected by "a.*.b".
func (p Pattern) Match(eventType string) bool {
	if p.src == "" {
		return false
	}
	rest := eventType
	for i, seg := range p.segs {
		var cur string
		dot := strings.IndexByte(rest, '.')
		more := i < len(p.segs)-1 || p.tail
		switch {
		case dot < 0 && more, dot >= 0 && !more:
			return false
		case dot < 0:
			cur, rest = rest, ""
		default:
			cur, rest = rest[:dot], rest[dot+1:]
		}
		if cur == "" || (seg != wildcardOne && seg != cur) {
			return false
		}
	}
	if p.tail {
		return nonEmptySegments(rest)
	}
	return true
}

// nonEmptySegments reports whether s is one or more non-empty dot-separated
// segments.
func nonEmptySegments(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	return !strings.Contains(s, "..")
}

// Set is a compiled list of patterns that matches an event type when any of
// its patterns does. The zero Set matches nothing.
type Set struct {
	// Literal patterns are looked up by hash so that subscriptions listing
	// many exact types cost one lookup rather than one comparison each.
	literals  map[string]struct{}
	wildcards []Pattern
	all       bool
}

// CompileSet compiles every pattern; the error names the index of the first
// invalid one. An empty list yields a Set that matches nothing.
func CompileSet(patterns []string) (Set, error) {
	var s Set
	for i, src := range patterns {
		p, err := Compile(src)
		if err != nil {
			return Set{}, fmt.Errorf("pattern %d: %w", i, err)
		}
		switch {
		case src == wildcardTail:
			s.all = true
		case !p.tail && !slices.Contains(p.segs, wildcardOne):
			if s.literals == nil {
				s.literals = make(map[string]struct{})
			}
			s.literals[src] = struct{}{}
		default:
			s.wildcards = append(s.wildcards, p)
		}
	}
	return s, nil
}

// Match reports whether any pattern in s matches eventType.
func (s Set) Match(eventType string) bool {
	if s.all {
		return nonEmptySegments(eventType)
	}
	if _, ok := s.literals[eventType]; ok {
		return true
	}
	for _, p := range s.wildcards {
		if p.Match(eventType) {
			return true
		}
	}
	return false
}
