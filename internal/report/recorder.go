package report

import (
	"time"
	"unicode/utf8"
)

// Key identifies a subscription. UID tells a subscription from a namesake
// created after it was deleted, whose status must not receive its counts.
type Key struct {
	Namespace, Name string
	UID             string
}

// Outcome is the result of one delivery attempt.
type Outcome struct {
	// Time the attempt finished.
	Time time.Time
	// Success is true when the endpoint answered 2xx.
	Success bool
	// DeadLettered is true when the event was given up on after this
	// failed attempt. It has no meaning on a success.
	DeadLettered bool
	// StatusCode the endpoint answered, 0 when it did not answer.
	StatusCode int
	// Class of the error, "" on success.
	Class string
	// Message is a short description, without secret material.
	Message string
	// Latency of the attempt. The status has no field for it; it is here
	// so the caller can feed metrics from the same value.
	Latency time.Duration
}

// Failure describes one failed attempt.
type Failure struct {
	Time       time.Time `json:"time"`
	StatusCode int       `json:"statusCode,omitempty"`
	Class      string    `json:"class,omitempty"`
	Message    string    `json:"message,omitempty"`
}

// maxMessage bounds failure and filter error messages, in bytes: the
// status shows a short description, not a response body.
const maxMessage = 256

// validTime returns t, or the zero time when JSON cannot encode t.
func validTime(t time.Time) time.Time {
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}
	}
	return t
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Add returns the totals with one more outcome counted. Outcomes may come
// out of order (several workers serve a subscription), so the run of
// failures goes by time: a success ends it only if it is the latest known,
// and a failure joins it only if it came after the latest known success.
func Add(t Totals, o Outcome) Totals {
	at := validTime(o.Time)
	if at.After(t.LastAttempt) {
		t.LastAttempt = at
	}
	if o.Success {
		t.Delivered++
		if !at.Before(t.LastSuccess) {
			t.LastSuccess = at
			t.ConsecutiveFailures = 0
			t.FailingSince = time.Time{}
		}
		return t
	}
	t.Failed++
	if o.DeadLettered {
		t.DeadLettered++
	}
	if at.After(t.LastSuccess) {
		t.ConsecutiveFailures++
		if t.FailingSince.IsZero() || at.Before(t.FailingSince) {
			t.FailingSince = at
		}
	}
	if t.LastFailure == nil || !at.Before(t.LastFailure.Time) {
		t.LastFailure = &Failure{Time: at, StatusCode: o.StatusCode, Class: o.Class, Message: truncate(o.Message, maxMessage)}
	}
	return t
}

// AddFilterError returns the totals with one more event whose filter failed
// at runtime, msg saying why.
func AddFilterError(t Totals, msg string) Totals {
	t.FilterErrors++
	t.LastFilterError = truncate(msg, maxMessage)
	return t
}
