package dispatcher

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// A subscription's rate limit holds across every instance of its
// dispatcher: each instance takes an equal share. The shares are
// recomputed whenever the number of live instances changes, so one
// instance that is left alone delivers at the whole rate.
//
// A receiver that answers 429 with Retry-After gets a pause and then a
// lower rate: nothing is sent to it until the time it named, then half the
// usual rate (or, without a limit, the subscription's concurrency per
// second), doubling every recoverStep without another 429 until the usual
// rate is back.

// recoverStep is how long each halved rate lasts after a Retry-After.
const recoverStep = 10 * time.Second

// maxRetryAfterPause bounds the pause a receiver can ask for.
const maxRetryAfterPause = time.Hour

// endpointLimiter is one subscription's rate limit on one instance.
type endpointLimiter struct {
	clock clock.Clock

	mu sync.Mutex
	// configured is the subscription's rate (rate.Inf when it has none),
	// burst its burst; both are for the whole dispatcher.
	configured rate.Limit
	burst      int
	// fallback is the rate used after a Retry-After when none is
	// configured.
	fallback  rate.Limit
	instances int
	// pausedUntil and throttledAt record the last Retry-After.
	pausedUntil time.Time
	throttledAt time.Time
	lim         *rate.Limiter
}

// newEndpointLimiter returns the limiter of a subscription: its rate limit,
// capped by allowed (the rate the endpoint allows in the validation
// handshake; 0 for none). Without either, only Retry-After answers slow
// deliveries down.
func newEndpointLimiter(clk clock.Clock, rl *hooklinev1.RateLimit, allowed float64, concurrency, instances int) *endpointLimiter {
	l := &endpointLimiter{clock: clk, configured: rate.Inf, burst: max(concurrency, 1),
		fallback: rate.Limit(max(concurrency, 1)), instances: max(instances, 1)}
	if rl != nil && rl.RequestsPerSecond > 0 {
		l.configured = rate.Limit(rl.RequestsPerSecond)
		l.burst = int(rl.RequestsPerSecond)
		if rl.Burst > 0 {
			l.burst = int(rl.Burst)
		}
	}
	if allowed > 0 && rate.Limit(allowed) < l.configured {
		l.configured = rate.Limit(allowed)
		l.burst = max(1, min(l.burst, int(allowed)))
	}
	l.lim = rate.NewLimiter(l.current(clk.Now()), l.share(l.burst))
	return l
}

// sameConfig says whether l was made for the same settings, so a re-sync
// keeps its state (tokens, a Retry-After pause).
func (l *endpointLimiter) sameConfig(o *endpointLimiter) bool {
	return l.configured == o.configured && l.burst == o.burst && l.fallback == o.fallback
}

// limited says whether deliveries must pass the limiter at all.
func (l *endpointLimiter) limited(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.configured != rate.Inf || !l.throttledAt.IsZero() && throttledRate(rate.Inf, l.fallback, now.Sub(l.throttledAt)) != rate.Inf
}

func (l *endpointLimiter) share(n int) int {
	return max(1, n/l.instances)
}

// current is this instance's rate now. Called with l.mu held.
func (l *endpointLimiter) current(now time.Time) rate.Limit {
	r := l.configured
	if !l.throttledAt.IsZero() {
		r = throttledRate(l.configured, l.fallback, now.Sub(l.throttledAt))
	}
	if r == rate.Inf {
		return r
	}
	return r / rate.Limit(l.instances)
}

// throttledRate is the rate since after a Retry-After pause: half the
// usual one, doubling every recoverStep, back to usual (rate.Inf when the
// subscription has no limit) once that is reached.
func throttledRate(configured, fallback rate.Limit, sincePause time.Duration) rate.Limit {
	base := configured
	if base == rate.Inf {
		base = fallback
	}
	r := base / 2
	for steps := sincePause / recoverStep; steps > 0; steps-- {
		r *= 2
		if r >= base {
			return configured
		}
	}
	return r
}

// setInstances shares the rate among n live instances.
func (l *endpointLimiter) setInstances(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n = max(n, 1)
	if n == l.instances {
		return
	}
	l.instances = n
	now := l.clock.Now()
	l.lim.SetLimitAt(now, l.current(now))
	l.lim.SetBurstAt(now, l.share(l.burst))
}

// retryAfter pauses the endpoint for d, after which the rate recovers step
// by step.
func (l *endpointLimiter) retryAfter(d time.Duration) {
	if d <= 0 {
		return
	}
	d = min(d, maxRetryAfterPause)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	until := now.Add(d)
	if until.After(l.pausedUntil) {
		l.pausedUntil = until
	}
	l.throttledAt = l.pausedUntil
	// The limiter keeps its rate until the pause ends: wait checks the
	// pause first and adjusts the rate each time.
}

// wait blocks until one request may go, telling the queue the message is
// in progress meanwhile. It reports false if ctx ended first.
func (l *endpointLimiter) wait(ctx context.Context, inProgress func() error) bool {
	for {
		l.mu.Lock()
		now := l.clock.Now()
		pause := l.pausedUntil.Sub(now)
		if pause <= 0 {
			l.lim.SetLimitAt(now, l.current(now))
		}
		l.mu.Unlock()
		if pause <= 0 {
			break
		}
		if !sleepInProgress(ctx, l.clock, pause, inProgress) {
			return false
		}
	}
	if !l.limited(l.clock.Now()) {
		return true
	}
	return waitTurn(ctx, l.clock, l.lim, inProgress)
}

// sleepInProgress sleeps d, marking the message in progress every
// inProgressEvery. It reports false if ctx ended first.
func sleepInProgress(ctx context.Context, clk clock.Clock, d time.Duration, inProgress func() error) bool {
	for d > 0 {
		step := min(d, inProgressEvery)
		select {
		case <-ctx.Done():
			return false
		case <-clk.After(step):
		}
		d -= step
		if d > 0 {
			_ = inProgress()
		}
	}
	return true
}

// countInstances counts the dispatcher's instances whose Lease is fresh.
func countInstances(leases []coordinationv1.Lease, dispatcher string, now time.Time) int {
	n := 0
	for _, l := range leases {
		if l.Labels[hooklinev1.LabelDispatcher] != dispatcher || l.Labels[hooklinev1.LabelLeaseRole] != hooklinev1.LeaseRoleInstance {
			continue
		}
		if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
			continue
		}
		if now.Before(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)) {
			n++
		}
	}
	return max(n, 1)
}
