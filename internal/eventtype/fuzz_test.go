package eventtype

import (
	"strings"
	"testing"
)

func FuzzValidatePattern(f *testing.F) {
	for _, v := range patternVectors {
		f.Add(v.in, "order.created")
	}
	for _, v := range matchVectors {
		f.Add(v.pattern, v.eventType)
	}

	f.Fuzz(func(t *testing.T, pattern, eventType string) {
		err := ValidatePattern(pattern)
		if len(pattern) <= MaxLength {
			if got, want := patternRE.MatchString(pattern), err == nil; got != want {
				t.Fatalf("PatternRegexp.MatchString(%q) = %v, ValidatePattern accepts = %v (err %v)", pattern, got, want, err)
			}
		} else if err == nil {
			t.Fatalf("ValidatePattern accepted a %d-byte pattern", len(pattern))
		}

		p, cerr := Compile(pattern)
		if (err == nil) != (cerr == nil) {
			t.Fatalf("ValidatePattern(%q) = %v but Compile = %v", pattern, err, cerr)
		}
		if err != nil {
			return
		}
		if p.String() != pattern {
			t.Fatalf("Compile(%q).String() = %q", pattern, p.String())
		}

		if got, want := p.Match(eventType), referenceMatch(t, pattern, eventType); got != want {
			t.Fatalf("Compile(%q).Match(%q) = %v, reference = %v", pattern, eventType, got, want)
		}
		s, err := CompileSet([]string{pattern})
		if err != nil {
			t.Fatalf("CompileSet([%q]): %v", pattern, err)
		}
		if got, want := s.Match(eventType), p.Match(eventType); got != want {
			t.Fatalf("Set.Match(%q) = %v, Pattern.Match = %v for %q", eventType, got, want, pattern)
		}

		// Random event types rarely match, so also check an instance that
		// must: every wildcard replaced by concrete segments.
		instance := strings.NewReplacer("*", "x", ">", "y.z").Replace(pattern)
		if !p.Match(instance) {
			t.Fatalf("Compile(%q).Match(%q) = false, want true", pattern, instance)
		}
		if len(instance) <= MaxLength {
			if err := ValidateType(instance); err != nil {
				t.Fatalf("instance %q of valid pattern %q is not a valid event type: %v", instance, pattern, err)
			}
		}
	})
}
