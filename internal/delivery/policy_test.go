package delivery

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func seeded() *rand.Rand { return rand.New(rand.NewPCG(7, 11)) }

func TestBackoff(t *testing.T) {
	defaults := Policy{}
	for _, tc := range []struct {
		name    string
		policy  Policy
		attempt int
		base    time.Duration // before jitter
	}{
		{"defaults attempt 1", defaults, 1, 5 * time.Second},
		{"defaults attempt 2", defaults, 2, 10 * time.Second},
		{"defaults attempt 3", defaults, 3, 20 * time.Second},
		{"defaults attempt 9", defaults, 9, 1280 * time.Second},
		{"defaults attempt 10", defaults, 10, 2560 * time.Second},
		{"defaults attempt 11 capped", defaults, 11, time.Hour},
		{"defaults attempt 1000 capped", defaults, 1000, time.Hour},
		{"huge attempt does not overflow", defaults, math.MaxInt, time.Hour},
		{"attempt 0 treated as the first", defaults, 0, 5 * time.Second},
		{"negative attempt treated as the first", defaults, -4, 5 * time.Second},
		{"custom schedule", Policy{InitialBackoff: time.Second, MaxBackoff: 10 * time.Second}, 4, 8 * time.Second},
		{"custom schedule capped", Policy{InitialBackoff: time.Second, MaxBackoff: 10 * time.Second}, 5, 10 * time.Second},
		{"initial above the cap", Policy{InitialBackoff: 2 * time.Hour, MaxBackoff: time.Hour}, 1, time.Hour},
		{"negative fields take defaults", Policy{InitialBackoff: -1, MaxBackoff: -1}, 2, 10 * time.Second},
		{"one nanosecond", Policy{InitialBackoff: 1, MaxBackoff: time.Hour}, 1, 1},
		{"odd base", Policy{InitialBackoff: 3, MaxBackoff: time.Hour}, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := tc.base/2, tc.base
			rnd, again := seeded(), seeded()
			var below, above bool
			for i := range 2000 {
				d := tc.policy.Backoff(tc.attempt, rnd)
				if d < lo || d > hi {
					t.Fatalf("draw %d: Backoff(%d) = %s, want within [%s, %s]", i, tc.attempt, d, lo, hi)
				}
				if d2 := tc.policy.Backoff(tc.attempt, again); d2 != d {
					t.Fatalf("draw %d: same seed gave %s then %s", i, d, d2)
				}
				below = below || d < lo+(hi-lo)/2
				above = above || d > lo+(hi-lo)/2
			}
			if tc.base >= 4 && (!below || !above) {
				t.Fatalf("Backoff(%d) did not spread over [%s, %s]: lower half hit %v, upper half hit %v", tc.attempt, lo, hi, below, above)
			}
			for range 100 {
				if d := tc.policy.Backoff(tc.attempt, nil); d < lo || d > hi {
					t.Fatalf("Backoff(%d, nil) = %s, want within [%s, %s]", tc.attempt, d, lo, hi)
				}
			}
		})
	}
}

func TestBackoffEndpointsReachable(t *testing.T) {
	// With a span of two values, both ends must come up: the jitter
	// covers the closed interval [d/2, d].
	p := Policy{InitialBackoff: 2, MaxBackoff: time.Hour}
	seen := map[time.Duration]bool{}
	rnd := seeded()
	for range 200 {
		seen[p.Backoff(1, rnd)] = true
	}
	if len(seen) != 2 || !seen[1] || !seen[2] {
		t.Fatalf("Backoff over a 2ns base gave %v, want exactly {1ns, 2ns}", seen)
	}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	hourAgo := now.Add(-time.Hour)
	fail500 := Result{StatusCode: 500, Class: ClassHTTPStatus, Message: "HTTP 500"}
	for _, tc := range []struct {
		name        string
		policy      Policy
		result      Result
		attempt     int
		firstStored time.Time
		want        Action
		minDelay    time.Duration
		maxDelay    time.Duration
		reason      string
	}{
		{name: "success", result: Result{StatusCode: 200, Success: true}, attempt: 1, firstStored: hourAgo, want: Ack, reason: "delivered"},
		{name: "success after the last attempt and past max age", result: Result{StatusCode: 204, Success: true}, attempt: 50, firstStored: now.Add(-48 * time.Hour), want: Ack},
		{name: "410 suspends", result: Result{StatusCode: 410, Class: ClassHTTPStatus}, attempt: 1, firstStored: hourAgo, want: Suspend, reason: "410"},
		{name: "410 suspends even on the last attempt", result: Result{StatusCode: 410, Class: ClassHTTPStatus}, attempt: 10, firstStored: hourAgo, want: Suspend},
		{name: "egress denied is not retried", result: Result{Class: ClassEgressDenied}, attempt: 1, firstStored: hourAgo, want: DeadLetter, reason: "EgressDenied is not retryable"},
		{name: "invalid request is not retried", result: Result{Class: ClassInvalidRequest}, attempt: 1, firstStored: hourAgo, want: DeadLetter, reason: "InvalidRequest is not retryable"},
		{name: "500 first attempt", result: fail500, attempt: 1, firstStored: hourAgo, want: Retry, minDelay: 2500 * time.Millisecond, maxDelay: 5 * time.Second, reason: "attempt 1 failed"},
		{name: "500 attempt 9 of 10", result: fail500, attempt: 9, firstStored: hourAgo, want: Retry, minDelay: 640 * time.Second, maxDelay: 1280 * time.Second},
		{name: "500 attempt 10 of 10", result: fail500, attempt: 10, firstStored: hourAgo, want: DeadLetter, reason: "gave up after 10 attempts"},
		{name: "500 beyond the limit", result: fail500, attempt: 12, firstStored: hourAgo, want: DeadLetter},
		{name: "single attempt policy", policy: Policy{MaxAttempts: 1}, result: fail500, attempt: 1, firstStored: hourAgo, want: DeadLetter},
		{name: "three attempt policy, second", policy: Policy{MaxAttempts: 3}, result: fail500, attempt: 2, firstStored: hourAgo, want: Retry, minDelay: 5 * time.Second, maxDelay: 10 * time.Second},
		{name: "timeout retried", result: Result{Class: ClassTimeout}, attempt: 3, firstStored: hourAgo, want: Retry, minDelay: 10 * time.Second, maxDelay: 20 * time.Second},
		{name: "connection error retried", result: Result{Class: ClassConnection}, attempt: 2, firstStored: hourAgo, want: Retry, minDelay: 5 * time.Second, maxDelay: 10 * time.Second},
		{name: "TLS error retried", result: Result{Class: ClassTLS}, attempt: 1, firstStored: hourAgo, want: Retry, minDelay: 2500 * time.Millisecond, maxDelay: 5 * time.Second},
		{name: "auth error retried", result: Result{Class: ClassAuth, Message: "fetching an OAuth2 token: token endpoint answered HTTP 503"}, attempt: 2, firstStored: hourAgo, want: Retry, minDelay: 5 * time.Second, maxDelay: 10 * time.Second, reason: "attempt 2 failed"},
		{name: "auth error on the last attempt", result: Result{Class: ClassAuth}, attempt: 10, firstStored: hourAgo, want: DeadLetter, reason: "gave up after 10 attempts"},
		{name: "401 from the endpoint retried", result: Result{StatusCode: 401, Class: ClassHTTPStatus}, attempt: 1, firstStored: hourAgo, want: Retry, minDelay: 2500 * time.Millisecond, maxDelay: 5 * time.Second},
		{name: "redirect retried", result: Result{StatusCode: 302, Class: ClassRedirect}, attempt: 1, firstStored: hourAgo, want: Retry, minDelay: 2500 * time.Millisecond, maxDelay: 5 * time.Second},
		{name: "429 Retry-After exactly", result: Result{StatusCode: 429, Class: ClassHTTPStatus, RetryAfter: 7 * time.Second}, attempt: 4, firstStored: hourAgo, want: Retry, minDelay: 7 * time.Second, maxDelay: 7 * time.Second, reason: "retry after 7s"},
		{name: "503 Retry-After shorter than the backoff", result: Result{StatusCode: 503, Class: ClassHTTPStatus, RetryAfter: time.Second}, attempt: 8, firstStored: hourAgo, want: Retry, minDelay: time.Second, maxDelay: time.Second},
		{name: "503 Retry-After capped", result: Result{StatusCode: 503, Class: ClassHTTPStatus, RetryAfter: 5 * time.Hour}, attempt: 1, firstStored: hourAgo, want: Retry, minDelay: time.Hour, maxDelay: time.Hour},
		{name: "503 Retry-After custom cap", policy: Policy{RetryAfterCap: 10 * time.Minute}, result: Result{StatusCode: 503, Class: ClassHTTPStatus, RetryAfter: 30 * time.Minute}, attempt: 1, firstStored: hourAgo, want: Retry, minDelay: 10 * time.Minute, maxDelay: 10 * time.Minute},
		{name: "429 without Retry-After backs off", result: Result{StatusCode: 429, Class: ClassHTTPStatus}, attempt: 2, firstStored: hourAgo, want: Retry, minDelay: 5 * time.Second, maxDelay: 10 * time.Second},
		{name: "Retry-After on another status is ignored", result: Result{StatusCode: 500, Class: ClassHTTPStatus, RetryAfter: 7 * time.Second}, attempt: 2, firstStored: hourAgo, want: Retry, minDelay: 5 * time.Second, maxDelay: 10 * time.Second},
		{name: "Retry-After does not extend the attempt limit", result: Result{StatusCode: 429, Class: ClassHTTPStatus, RetryAfter: 7 * time.Second}, attempt: 10, firstStored: hourAgo, want: DeadLetter},
		{name: "backoff past max age", result: fail500, attempt: 1, firstStored: now.Add(-24*time.Hour + time.Second), want: DeadLetter, reason: "maximum age of 24h0m0s"},
		{name: "already past max age", result: fail500, attempt: 2, firstStored: now.Add(-25 * time.Hour), want: DeadLetter},
		{name: "Retry-After landing exactly on max age", result: Result{StatusCode: 429, Class: ClassHTTPStatus, RetryAfter: 7 * time.Second}, attempt: 1, firstStored: now.Add(-24*time.Hour + 7*time.Second), want: Retry, minDelay: 7 * time.Second, maxDelay: 7 * time.Second},
		{name: "Retry-After one second past max age", result: Result{StatusCode: 429, Class: ClassHTTPStatus, RetryAfter: 7 * time.Second}, attempt: 1, firstStored: now.Add(-24*time.Hour + 6*time.Second), want: DeadLetter},
		{name: "custom max age", policy: Policy{MaxAge: 10 * time.Minute}, result: fail500, attempt: 9, firstStored: now.Add(-time.Minute), want: DeadLetter},
		{name: "custom max age with room", policy: Policy{MaxAge: 10 * time.Minute}, result: fail500, attempt: 1, firstStored: now.Add(-time.Minute), want: Retry, minDelay: 2500 * time.Millisecond, maxDelay: 5 * time.Second},
		{name: "unknown first-stored time skips the age check", result: fail500, attempt: 9, want: Retry, minDelay: 640 * time.Second, maxDelay: 1280 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.policy.Decide(tc.result, tc.attempt, tc.firstStored, now, seeded())
			if got.Action != tc.want {
				t.Fatalf("Decide() = %s (%q), want %s", got.Action, got.Reason, tc.want)
			}
			if got.Delay < tc.minDelay || got.Delay > tc.maxDelay {
				t.Fatalf("Decide() delay = %s, want within [%s, %s]", got.Delay, tc.minDelay, tc.maxDelay)
			}
			if got.Reason == "" || !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("Decide() reason = %q, want it to contain %q", got.Reason, tc.reason)
			}
			// Decide is pure: the same inputs and seed decide the same.
			if again := tc.policy.Decide(tc.result, tc.attempt, tc.firstStored, now, seeded()); again != got {
				t.Fatalf("Decide() not deterministic: %+v then %+v", got, again)
			}
		})
	}
}

func TestDecideUsesBackoffJitter(t *testing.T) {
	// The retry delay is Backoff's, draw for draw.
	p := Policy{}
	fail := Result{StatusCode: 500, Class: ClassHTTPStatus}
	a, b := seeded(), seeded()
	for attempt := 1; attempt < 10; attempt++ {
		d := p.Decide(fail, attempt, time.Time{}, time.Now(), a)
		if want := p.Backoff(attempt, b); d.Delay != want {
			t.Fatalf("attempt %d: Decide delay %s, Backoff %s", attempt, d.Delay, want)
		}
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{Ack: "Ack", Retry: "Retry", DeadLetter: "DeadLetter", Suspend: "Suspend", 0: "Action(0)"} {
		if got := a.String(); got != want {
			t.Errorf("Action(%d).String() = %q, want %q", int(a), got, want)
		}
	}
}
