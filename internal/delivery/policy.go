package delivery

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// Policy defaults, used for zero (or negative) Policy fields.
const (
	DefaultMaxAttempts    = 10
	DefaultMaxAge         = 24 * time.Hour
	DefaultInitialBackoff = 5 * time.Second
	DefaultMaxBackoff     = time.Hour
	DefaultRetryAfterCap  = time.Hour
)

// Policy is a subscription's retry policy. Zero fields take the defaults
// above.
type Policy struct {
	// MaxAttempts is how many attempts a message gets, the first included.
	MaxAttempts int
	// MaxAge is how long after it was first stored a message may still be
	// attempted.
	MaxAge time.Duration
	// InitialBackoff is the delay after the first failed attempt, before
	// jitter; it doubles with each further failure.
	InitialBackoff time.Duration
	// MaxBackoff caps the doubling.
	MaxBackoff time.Duration
	// RetryAfterCap caps how long an endpoint's Retry-After can hold a
	// message back.
	RetryAfterCap time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.MaxAge <= 0 {
		p.MaxAge = DefaultMaxAge
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = DefaultInitialBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultMaxBackoff
	}
	if p.RetryAfterCap <= 0 {
		p.RetryAfterCap = DefaultRetryAfterCap
	}
	return p
}

// Backoff returns the delay after failed attempt number attempt (1-based):
// InitialBackoff*2^(attempt-1), capped at MaxBackoff, with equal jitter:
// the result is uniform in [d/2, d], so endpoints that failed together are
// not all retried at the same instant, yet no retry comes much sooner than
// the schedule says. rnd supplies the jitter; a *rand.Rand is not safe for
// concurrent use, so share one only under a lock. Nil rnd uses the
// package-level math/rand/v2 source, which is.
func (p Policy) Backoff(attempt int, rnd *rand.Rand) time.Duration {
	p = p.withDefaults()
	d := min(p.InitialBackoff, p.MaxBackoff)
	// Doubling step by step cannot overflow: it stops at MaxBackoff.
	for i := 1; i < attempt && d < p.MaxBackoff; i++ {
		d = min(2*d, p.MaxBackoff)
	}
	half := d / 2
	span := int64(d-half) + 1
	var jitter int64
	if rnd != nil {
		jitter = rnd.Int64N(span)
	} else {
		jitter = rand.Int64N(span)
	}
	return half + time.Duration(jitter)
}

// Action is what to do with a message after an attempt.
type Action int

// The actions. The zero Action is none of them, so a forgotten Decision is
// not mistaken for an acknowledgement.
const (
	// Ack: delivered; acknowledge the message.
	Ack Action = iota + 1
	// Retry: attempt again after Decision.Delay.
	Retry
	// DeadLetter: give up; copy the message to the dead-letter stream,
	// then acknowledge it.
	DeadLetter
	// Suspend: the endpoint is gone (410); suspend the subscription and
	// hold the message, unacknowledged.
	Suspend
)

// String names the action for logs and metrics.
func (a Action) String() string {
	switch a {
	case Ack:
		return "Ack"
	case Retry:
		return "Retry"
	case DeadLetter:
		return "DeadLetter"
	case Suspend:
		return "Suspend"
	default:
		return fmt.Sprintf("Action(%d)", int(a))
	}
}

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	// Delay is how long to wait before the next attempt; only for Retry.
	Delay time.Duration
	// Reason says why, for logs and the dead-letter record.
	Reason string
}

// Decide says what to do after attempt number attempt (1-based) ended
// with r, for a message first stored at firstStored, at time now:
//
//   - success: Ack;
//   - 410 Gone: Suspend (the message is held, not acknowledged);
//   - EgressDenied or InvalidRequest: DeadLetter, as retrying cannot help
//     (an AuthError is retried: a token endpoint may be briefly down, and
//     credentials fixed in their Secret take effect on the next attempt);
//   - attempt >= MaxAttempts: DeadLetter;
//   - otherwise Retry, after Retry-After capped at RetryAfterCap for a 429
//     or 503 that carried one, else after Backoff(attempt) - unless that
//     would be later than firstStored+MaxAge, which is DeadLetter.
//
// A zero firstStored means unknown and skips the age check.
func (p Policy) Decide(r Result, attempt int, firstStored, now time.Time, rnd *rand.Rand) Decision {
	p = p.withDefaults()
	switch {
	case r.Success:
		return Decision{Action: Ack, Reason: "delivered"}
	case r.StatusCode == http.StatusGone:
		return Decision{Action: Suspend, Reason: "endpoint answered 410 Gone"}
	case r.Class == ClassEgressDenied || r.Class == ClassInvalidRequest:
		return Decision{Action: DeadLetter, Reason: fmt.Sprintf("%s is not retryable", r.Class)}
	case attempt >= p.MaxAttempts:
		return Decision{Action: DeadLetter, Reason: fmt.Sprintf("gave up after %d attempts", attempt)}
	}

	var delay time.Duration
	retryAfter := r.RetryAfter > 0 &&
		(r.StatusCode == http.StatusTooManyRequests || r.StatusCode == http.StatusServiceUnavailable)
	if retryAfter {
		delay = min(r.RetryAfter, p.RetryAfterCap)
	} else {
		delay = p.Backoff(attempt, rnd)
	}
	if !firstStored.IsZero() && now.Add(delay).After(firstStored.Add(p.MaxAge)) {
		return Decision{Action: DeadLetter, Reason: fmt.Sprintf("next attempt would be past the maximum age of %s", p.MaxAge)}
	}
	reason := fmt.Sprintf("attempt %d failed, backing off", attempt)
	if retryAfter {
		reason = fmt.Sprintf("attempt %d failed, endpoint asked to retry after %s", attempt, r.RetryAfter)
	}
	return Decision{Action: Retry, Delay: delay, Reason: reason}
}
