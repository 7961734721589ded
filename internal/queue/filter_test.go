package queue

import (
	"slices"
	"testing"
)

func TestPatternsOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.>", "a", false},
		{"a.>", "a.b.c", true},
		{"a.*.c", "a.b.*", true},
		{"a.*.c", "a.b.d", false},
		{"*", "a.b", false},
		{">", "a.b", true},
		{">", "a", true},
		{"*.>", "a", false},
		{"*.>", "a.b", true},
		{"a.*", "*.b", true},
		{"a.b.>", "a.*.c", true},
		{"a.b.>", "a.c.>", false},
	}
	for _, tt := range tests {
		if got := PatternsOverlap(tt.a, tt.b); got != tt.want {
			t.Errorf("PatternsOverlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := PatternsOverlap(tt.b, tt.a); got != tt.want {
			t.Errorf("PatternsOverlap(%q, %q) = %v, want %v (symmetry)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestPatternCovers(t *testing.T) {
	tests := []struct {
		outer, inner string
		want         bool
	}{
		{"a.b", "a.b", true},
		{"a.*", "a.b", true},
		{"a.b", "a.*", false},
		{"a.>", "a.b", true},
		{"a.>", "a.*.c", true},
		{"a.>", "a.>", true},
		{"a.>", "a", false},
		{"a.*", "a.>", false},
		{">", "a", true},
		{">", "a.>", true},
		{"*", ">", false},
		{"*.>", ">", false},
		{"a.*.c", "a.b.*", false},
		{"*.*", "a.b", true},
		{"*.*", "a.b.c", false},
	}
	for _, tt := range tests {
		if got := PatternCovers(tt.outer, tt.inner); got != tt.want {
			t.Errorf("PatternCovers(%q, %q) = %v, want %v", tt.outer, tt.inner, got, tt.want)
		}
	}
}

func TestFilterSubjects(t *testing.T) {
	const p = "hookline.ops.default.events.shop"
	tests := []struct {
		name     string
		patterns []string
		want     []string
	}{
		{"none selects all", nil, []string{p + ".>"}},
		{"single literal", []string{"order.created"}, []string{p + ".order.created"}},
		{"disjoint sorted", []string{"order.paid", "invoice.sent"}, []string{p + ".invoice.sent", p + ".order.paid"}},
		{"covered dropped", []string{"order.created", "order.*", "invoice.sent"}, []string{p + ".invoice.sent", p + ".order.*"}},
		{"tail covers deeper", []string{"order.>", "order.item.added", "order.*"}, []string{p + ".order.>"}},
		{"duplicates collapse", []string{"a.b", "a.b"}, []string{p + ".a.b"}},
		{"partial overlap widens", []string{"a.*.c", "a.b.*"}, []string{p + ".>"}},
		{"everything", []string{"a", ">"}, []string{p + ".>"}},
		{"different lengths kept", []string{"a.*", "a.*.*"}, []string{p + ".a.*", p + ".a.*.*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FilterSubjects(p, tt.patterns)
			if !slices.Equal(got, tt.want) {
				t.Errorf("FilterSubjects(%q) = %q, want %q", tt.patterns, got, tt.want)
			}
		})
	}
}

func TestNamesFor(t *testing.T) {
	tests := []struct {
		ns, name string
		want     Names
	}{
		{"hookline-system", "default", Names{
			EventsStream:     "HOOKLINE_hookline-system_default_EVENTS",
			DeadLetterStream: "HOOKLINE_hookline-system_default_DEADLETTER",
			StatsStream:      "HOOKLINE_hookline-system_default_STATS",
			EventsPrefix:     "hookline.hookline-system.default.events",
			DirectPrefix:     "hookline.hookline-system.default.direct",
			DeadLetterPrefix: "hookline.hookline-system.default.deadletter",
			StatsSubject:     "hookline.hookline-system.default.stats",
		}},
		{"ops", "eu.west", Names{
			EventsStream:     "HOOKLINE_ops_eu_west_EVENTS",
			DeadLetterStream: "HOOKLINE_ops_eu_west_DEADLETTER",
			StatsStream:      "HOOKLINE_ops_eu_west_STATS",
			EventsPrefix:     "hookline.ops.eu_west.events",
			DirectPrefix:     "hookline.ops.eu_west.direct",
			DeadLetterPrefix: "hookline.ops.eu_west.deadletter",
			StatsSubject:     "hookline.ops.eu_west.stats",
		}},
	}
	for _, tt := range tests {
		if got := NamesFor(tt.ns, tt.name); got != tt.want {
			t.Errorf("NamesFor(%q, %q) = %+v, want %+v", tt.ns, tt.name, got, tt.want)
		}
	}
}

func TestHeaderSafe(t *testing.T) {
	long := make([]byte, 0, 2000)
	for len(long) < 1500 {
		long = append(long, "é"...)
	}
	tests := []struct {
		in, want string
	}{
		{"plain", "plain"},
		{"line one\r\nline two", "line one  line two"},
		{"  padded\t", "padded"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{string(long), string(long[:maxFailureMessage])},
	}
	for _, tt := range tests {
		if got := headerSafe(tt.in); got != tt.want {
			t.Errorf("headerSafe(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
