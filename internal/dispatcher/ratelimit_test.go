package dispatcher

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func TestThrottledRate(t *testing.T) {
	tests := []struct {
		name                 string
		configured, fallback rate.Limit
		since                time.Duration
		want                 rate.Limit
	}{
		{"half at first", 100, 10, 0, 50},
		{"still half within the first step", 100, 10, recoverStep - time.Millisecond, 50},
		{"back after one step", 100, 10, recoverStep, 100},
		{"odd rates recover", 30, 10, recoverStep, 30},
		{"small rates halve", 1, 10, 0, 0.5},
		{"unlimited: half the fallback", rate.Inf, 10, 0, 5},
		{"unlimited: unlimited again after recovering", rate.Inf, 10, recoverStep, rate.Inf},
		{"unlimited: long after", rate.Inf, 10, time.Hour, rate.Inf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := throttledRate(tt.configured, tt.fallback, tt.since); got != tt.want {
				t.Errorf("throttledRate(%v, %v, %s) = %v, want %v", tt.configured, tt.fallback, tt.since, got, tt.want)
			}
		})
	}
}

func TestCountInstances(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	lease := func(dispatcher, role string, renewed time.Duration) coordinationv1.Lease {
		rt := metav1.NewMicroTime(now.Add(-renewed))
		return coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{hooklinev1.LabelDispatcher: dispatcher, hooklinev1.LabelLeaseRole: role}},
			Spec:       coordinationv1.LeaseSpec{RenewTime: &rt, LeaseDurationSeconds: ptr.To[int32](30)},
		}
	}
	tests := []struct {
		name   string
		leases []coordinationv1.Lease
		want   int
	}{
		{"none counts as this one", nil, 1},
		{"fresh ones count", []coordinationv1.Lease{lease("default", hooklinev1.LeaseRoleInstance, time.Second), lease("default", hooklinev1.LeaseRoleInstance, 29*time.Second)}, 2},
		{"expired ones do not", []coordinationv1.Lease{lease("default", hooklinev1.LeaseRoleInstance, time.Second), lease("default", hooklinev1.LeaseRoleInstance, 31*time.Second)}, 1},
		{"other dispatchers do not", []coordinationv1.Lease{lease("default", hooklinev1.LeaseRoleInstance, time.Second), lease("other", hooklinev1.LeaseRoleInstance, time.Second)}, 1},
		{"other roles do not", []coordinationv1.Lease{lease("default", hooklinev1.LeaseRoleInstance, time.Second), lease("default", "status-writer", time.Second)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := countInstances(tt.leases, "default", now); got != tt.want {
				t.Errorf("countInstances() = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestEndpointLimiterShares checks that each of n instances gets 1/n of the
// rate and burst.
func TestEndpointLimiterShares(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	l := newEndpointLimiter(clk, &hooklinev1.RateLimit{RequestsPerSecond: 90, Burst: 30}, 0, 10, 3)
	if l.lim.Limit() != 30 || l.lim.Burst() != 10 {
		t.Errorf("with 3 instances: rate %v burst %d, want 30 and 10", l.lim.Limit(), l.lim.Burst())
	}
	l.setInstances(1)
	if l.lim.Limit() != 90 || l.lim.Burst() != 30 {
		t.Errorf("alone: rate %v burst %d, want 90 and 30", l.lim.Limit(), l.lim.Burst())
	}
	allowed := newEndpointLimiter(clk, &hooklinev1.RateLimit{RequestsPerSecond: 90, Burst: 30}, 2, 10, 1)
	if allowed.lim.Limit() != 2 || allowed.lim.Burst() != 2 {
		t.Errorf("capped at 2/s by the endpoint: rate %v burst %d, want 2 and 2", allowed.lim.Limit(), allowed.lim.Burst())
	}
	unlimited := newEndpointLimiter(clk, nil, 0, 10, 2)
	if unlimited.limited(clk.Now()) {
		t.Error("a subscription without a rate limit is limited before any Retry-After")
	}
}

// TestEndpointLimiterRetryAfter checks that a Retry-After holds every
// delivery until its time, then lets them go at half the rate.
func TestEndpointLimiterRetryAfter(t *testing.T) {
	start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(start)
	l := newEndpointLimiter(clk, nil, 0, 4, 1)
	l.retryAfter(30 * time.Second)
	if !l.limited(clk.Now()) {
		t.Fatal("not limited after a Retry-After")
	}
	var marks atomic.Int32
	done := make(chan bool, 1)
	go func() { done <- l.wait(context.Background(), func() error { marks.Add(1); return nil }) }()
	for range 3 {
		waitForWaiter(t, clk)
		select {
		case <-done:
			t.Fatalf("a delivery went %s into a 30s pause", clk.Since(start))
		default:
		}
		clk.Step(inProgressEvery)
	}
	if !<-done {
		t.Fatal("wait gave up")
	}
	if got := clk.Since(start); got != 30*time.Second {
		t.Errorf("released after %s, want 30s", got)
	}
	if marks.Load() != 2 {
		t.Errorf("marked in progress %d times during the pause, want 2 (at 10s and 20s)", marks.Load())
	}
	if got := l.lim.Limit(); got != 2 {
		t.Errorf("rate after the pause = %v, want 2 (half the concurrency of 4 per second)", got)
	}
	clk.Step(recoverStep)
	if l.limited(clk.Now()) {
		t.Errorf("still limited %s after the pause, want recovered", recoverStep)
	}
}

func waitForWaiter(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute) // far above any plausible wait
	for !clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("nothing waits on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}
