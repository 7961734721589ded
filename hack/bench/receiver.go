package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// receiver is the webhook endpoint of every row: one HTTP server on the
// loopback interface. The first path segment names a group, and the
// receiver counts requests per group. Groups under /hang/ wait until the
// sender gives up; every other group reads the body and answers 204 at
// once. For latency groups it also records when each webhook-id arrived.
type receiver struct {
	srv *http.Server
	url string

	counts sync.Map // group -> *atomic.Int64

	mu       sync.Mutex
	arrivals map[string]map[string]time.Time // group -> webhook-id -> first arrival
	hanging  atomic.Int64
}

// Receiver groups.
const (
	groupThroughput     = "thru"
	groupThroughputBase = "thru-base"
	groupLatency        = "lat"
	groupLatencyBase    = "lat-base"
	groupIsolation      = "iso"
	groupFanout         = "fan"
	groupFanoutBase     = "fan-base"
	groupScale          = "scale"
	groupHang           = "hang"
	groupStored         = "stored"
	groupStoredBase     = "stored-base"
	groupDeadOK         = "dead-ok"
)

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the receiver: %w", err)
	}
	r := &receiver{
		url:      "http://" + ln.Addr().String(),
		arrivals: map[string]map[string]time.Time{groupLatency: {}, groupLatencyBase: {}},
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		_ = r.srv.Close()
	}
}

// counter returns the request counter of a group.
func (r *receiver) counter(group string) *atomic.Int64 {
	if c, ok := r.counts.Load(group); ok {
		return c.(*atomic.Int64)
	}
	c, _ := r.counts.LoadOrStore(group, &atomic.Int64{})
	return c.(*atomic.Int64)
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	group, _, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
	if group == groupHang {
		r.hang(w, req)
		return
	}
	_, _ = io.Copy(io.Discard, req.Body)
	now := time.Now()
	if group == groupLatency || group == groupLatencyBase {
		id := req.Header.Get("Webhook-Id")
		r.mu.Lock()
		if _, seen := r.arrivals[group][id]; !seen {
			r.arrivals[group][id] = now
		}
		r.mu.Unlock()
	}
	r.counter(group).Add(1)
	w.WriteHeader(http.StatusNoContent)
}

// hang holds the request until the sender gives up (its delivery timeout)
// or a minute passes.
func (r *receiver) hang(w http.ResponseWriter, req *http.Request) {
	r.hanging.Add(1)
	defer r.hanging.Add(-1)
	r.counter(groupHang).Add(1)
	select {
	case <-req.Context().Done():
	case <-time.After(time.Minute):
		w.WriteHeader(http.StatusNoContent)
	}
}

// arrival returns when webhook-id id first reached a latency group.
func (r *receiver) arrival(group, id string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.arrivals[group][id]
	return t, ok
}

// forgetArrivals drops the arrival times of a latency group.
func (r *receiver) forgetArrivals(group string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.arrivals[group] = map[string]time.Time{}
}

// waitCount polls until the group's counter reaches n, and returns when it
// did.
func waitCount(ctx context.Context, c *atomic.Int64, n int64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if c.Load() >= n {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d requests arrived within %s", c.Load(), n, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// boundedWaits is whether poll gives up after its timeout: a benchmark run
// must end, but the smoke test, on a machine of any speed, waits as long as
// it takes (its test binary's -timeout is the guard).
var boundedWaits = true

// poll calls check every interval until it returns nil or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, what string, check func(context.Context) error) error {
	if !boundedWaits {
		timeout = 100 * 365 * 24 * time.Hour
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("waiting %s for %s: %w", timeout, what, err)
			}
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
