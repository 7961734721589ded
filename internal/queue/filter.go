package queue

import (
	"slices"
	"strings"
)

// FilterSubjects returns a consumer's filter subjects for event type
// patterns (eventtype grammar, already validated): prefix + "." + pattern for
// each pattern that no other pattern covers, sorted.
//
// JetStream refuses a consumer whose filters include one another (error
// 10138, "consumer subject filters cannot overlap"), so covered patterns are
// dropped; the result selects exactly the same events. Partially overlapping
// filters such as "a.*.c" and "a.b.*" are accepted by nats-server 2.15, which
// delivers a message matching both once (TestServerFilterOverlap), yet such a
// pair widens the consumer to prefix + ".>" so that correctness never rests
// on that: the worker re-checks patterns in process, so widening only costs
// deliveries it drops. An empty pattern list also yields prefix + ".>".
func FilterSubjects(prefix string, patterns []string) []string {
	kept := make([]string, 0, len(patterns))
	for i, p := range patterns {
		covered := false
		for j, o := range patterns {
			if i == j {
				continue
			}
			// Equal patterns cover each other; keep the first.
			if PatternCovers(o, p) && (o != p || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			kept = append(kept, p)
		}
	}
	all := []string{prefix + ".>"}
	if len(kept) == 0 {
		return all
	}
	for i := range kept {
		for j := i + 1; j < len(kept); j++ {
			if PatternsOverlap(kept[i], kept[j]) {
				return all
			}
		}
	}
	slices.Sort(kept)
	out := make([]string, len(kept))
	for i, p := range kept {
		out[i] = prefix + "." + p
	}
	return out
}

// PatternsOverlap reports whether some event type matches both patterns.
func PatternsOverlap(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(as) && i == len(bs):
			return true
		case i == len(as) || i == len(bs):
			// ">" needs at least one more segment, which the shorter
			// pattern cannot supply.
			return false
		}
		x, y := as[i], bs[i]
		if x == ">" || y == ">" {
			return true
		}
		if x != "*" && y != "*" && x != y {
			return false
		}
	}
}

// PatternCovers reports whether every event type matched by inner is also
// matched by outer.
func PatternCovers(outer, inner string) bool {
	os, is := strings.Split(outer, "."), strings.Split(inner, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(os) && i == len(is):
			return true
		case i == len(os) || i == len(is):
			return false
		}
		o, n := os[i], is[i]
		switch {
		case o == ">":
			return true
		case n == ">":
			return false
		case o == "*":
		case o != n:
			return false
		}
	}
}
