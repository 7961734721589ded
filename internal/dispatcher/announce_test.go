package dispatcher

import (
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/queue"
)

func TestQueueAlert(t *testing.T) {
	const max = 1000
	for _, tc := range []struct {
		name     string
		bytes    uint64
		max      uint64
		wasNear  bool
		wantNear bool
		warns    bool
	}{
		{"empty", 0, max, false, false, false},
		{"below the mark", 799, max, false, false, false},
		{"reaches the mark", 800, max, false, true, true},
		{"full", 1000, max, false, true, true},
		{"stays near: no second warning", 900, max, true, true, false},
		{"hovers below the mark: still near, no warning", 750, max, true, true, false},
		{"falls below the rearm mark", 699, max, true, false, false},
		{"unbounded", 1 << 40, 0, false, false, false},
	} {
		near, warning := queueAlert(queue.Usage{Bytes: tc.bytes, MaxBytes: tc.max}, tc.wasNear)
		if near != tc.wantNear || (warning != "") != tc.warns {
			t.Errorf("%s: queueAlert = %v, %q; want near %v, warning %v", tc.name, near, warning, tc.wantNear, tc.warns)
		}
		if tc.warns && !strings.Contains(warning, "503") {
			t.Errorf("%s: warning %q does not say what happens when full", tc.name, warning)
		}
	}
	if _, w := queueAlert(queue.Usage{Bytes: 850, MaxBytes: max}, false); !strings.Contains(w, "850 of its 1000 bytes (85%)") {
		t.Errorf("warning %q does not give the use", w)
	}
}

func TestThrottle(t *testing.T) {
	var th throttle
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at       time.Duration
		ok       bool
		heldBack int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{59 * time.Second, false, 0},
		{time.Minute, true, 2},
		{time.Minute + time.Second, false, 0},
		{3 * time.Minute, true, 1},
		{5 * time.Minute, true, 0},
	}
	for _, s := range steps {
		ok, held := th.allow(start.Add(s.at))
		if ok != s.ok || held != s.heldBack {
			t.Errorf("allow at +%s = %v, %d; want %v, %d", s.at, ok, held, s.ok, s.heldBack)
		}
	}
}
