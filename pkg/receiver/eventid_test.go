package receiver

import (
	"strings"
	"testing"

	"github.com/hookline/hookline/internal/eventid"
)

// TestAcceptsEveryHooklineEventID ties the SDK's webhook-id rule to
// Hookline's own (internal/eventid): whatever id Hookline sends, the SDK
// accepts, so the wider rule for other senders never refuses Hookline.
func TestAcceptsEveryHooklineEventID(t *testing.T) {
	if eventid.MaxLength > MaxIDLength {
		t.Fatalf("Hookline sends ids of up to %d characters, the SDK accepts %d", eventid.MaxLength, MaxIDLength)
	}
	var alphabet strings.Builder
	for c := 0; c < 256; c++ {
		if eventid.ValidByte(byte(c)) {
			alphabet.WriteByte(byte(c))
			if err := checkID(string(rune(c))); err != nil {
				t.Errorf("the SDK refuses %q, which Hookline ids may hold: %v", rune(c), err)
			}
		}
	}
	if alphabet.Len() < 60 {
		t.Fatalf("Hookline's alphabet has %d characters; the test reads it wrong", alphabet.Len())
	}
	if err := checkID(strings.Repeat("a", eventid.MaxLength)); err != nil {
		t.Errorf("the SDK refuses a Hookline id of the maximum length: %v", err)
	}
	// Other Standard Webhooks senders' ids, wider than Hookline's.
	for _, id := range []string{"msg_p5jXN8AQM9LWM0D4loKWxJek", "2b5f0c1e-8f7a-4d8e-9c1a-7e3b2d1f0a9c", "aGVsbG8+d29ybGQ/Pz8=", "evt/2024@team"} {
		if err := checkID(id); err != nil {
			t.Errorf("checkID(%q) = %v", id, err)
		}
	}
}
