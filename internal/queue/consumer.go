package queue

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// SubscriptionTokenPrefix starts every subscription token.
const SubscriptionTokenPrefix = "sub-"

// SubscriptionToken names a subscription in subjects and checkpoints:
// "sub-<UID>". A UID holds only [0-9a-f-], one subject token.
func SubscriptionToken(uid string) string { return SubscriptionTokenPrefix + uid }

// Headers added to a dead-lettered or moved copy of an event.
const (
	HeaderAttempts        = "Hookline-Attempts"
	HeaderFailureClass    = "Hookline-Failure-Class"
	HeaderFailureStatus   = "Hookline-Failure-Status"
	HeaderFailureMessage  = "Hookline-Failure-Message"
	HeaderSubscriptionUID = "Hookline-Subscription-Uid"
	// HeaderNotBefore is when a moved event may be delivered again.
	HeaderNotBefore = "Hookline-Not-Before"
	// HeaderStored is when the events stream stored a moved event first.
	HeaderStored = "Hookline-Stored"
)

// maxFailureMessage bounds the failure text kept with a dead letter.
const maxFailureMessage = 1024

// Failure describes why a delivery was dead-lettered.
type Failure struct {
	Class      string
	StatusCode int
	Message    string
	Attempts   int
}

// headerSafe makes s a single header line of bounded length.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) > maxFailureMessage {
		cut := maxFailureMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.TrimSpace(s)
}

// storedEvent reads an event back from the headers and body it was stored
// with; moved events and dead letters carry the same headers.
func storedEvent(h nats.Header, data []byte) (Event, error) {
	ev := Event{
		ID:        h.Get(HeaderEventID),
		Namespace: h.Get(HeaderEventNamespace),
		Type:      h.Get(HeaderEventType),
		Data:      data,
	}
	if ev.ID == "" || ev.Namespace == "" || ev.Type == "" {
		return Event{}, errors.New("lacks event headers")
	}
	var err error
	ev.Time, err = time.Parse(time.RFC3339Nano, h.Get(HeaderEventTime))
	if err != nil {
		return Event{}, fmt.Errorf("parsing event time: %w", err)
	}
	return ev, nil
}

// copyEventHeaders copies the event headers of src into a new header, for
// a copy stored elsewhere: JetStream's own headers stay behind.
func copyEventHeaders(src nats.Header) nats.Header {
	h := make(nats.Header, len(src)+4)
	for k, v := range src {
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		h[k] = v
	}
	return h
}
