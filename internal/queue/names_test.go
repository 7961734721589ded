package queue

import "testing"

func TestNamesFor(t *testing.T) {
	tests := []struct {
		ns, name string
		want     Names
	}{
		{"hookline-system", "default", Names{
			EventsStream:     "HOOKLINE_hookline-system_default_EVENTS",
			DeadLetterStream: "HOOKLINE_hookline-system_default_DEADLETTER",
			ProgressStream:   "HOOKLINE_hookline-system_default_PROGRESS",
			BacklogStream:    "HOOKLINE_hookline-system_default_BACKLOG",
			EventsPrefix:     "hookline.hookline-system.default.events",
			DirectPrefix:     "hookline.hookline-system.default.direct",
			DeadLetterPrefix: "hookline.hookline-system.default.deadletter",
			ProgressPrefix:   "hookline.hookline-system.default.progress",
			BacklogPrefix:    "hookline.hookline-system.default.backlog",
		}},
		{"ops", "eu.west", Names{
			EventsStream:     "HOOKLINE_ops_eu_west_EVENTS",
			DeadLetterStream: "HOOKLINE_ops_eu_west_DEADLETTER",
			ProgressStream:   "HOOKLINE_ops_eu_west_PROGRESS",
			BacklogStream:    "HOOKLINE_ops_eu_west_BACKLOG",
			EventsPrefix:     "hookline.ops.eu_west.events",
			DirectPrefix:     "hookline.ops.eu_west.direct",
			DeadLetterPrefix: "hookline.ops.eu_west.deadletter",
			ProgressPrefix:   "hookline.ops.eu_west.progress",
			BacklogPrefix:    "hookline.ops.eu_west.backlog",
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
