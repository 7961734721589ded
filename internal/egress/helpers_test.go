package egress

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeResolver answers from a table; a host it does not know does not
// exist. It records every lookup.
type fakeResolver struct {
	answers map[string][]string
	mu      sync.Mutex
	lookups []string
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.lookups = append(r.lookups, network+" "+host)
	r.mu.Unlock()
	texts, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	addrs := make([]netip.Addr, 0, len(texts))
	for _, s := range texts {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	return addrs, nil
}

// dialRecorder stands in for the network: it records every address it is
// asked to dial and hands back one end of a pipe, or refuses the addresses
// listed in refuse. With through set it dials for real instead.
type dialRecorder struct {
	refuse  []string
	through bool

	mu      sync.Mutex
	dialled []string
}

func (r *dialRecorder) dial(ctx context.Context, network, address string) (net.Conn, error) {
	r.mu.Lock()
	r.dialled = append(r.dialled, address)
	r.mu.Unlock()
	if slices.Contains(r.refuse, address) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	if r.through {
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	client, server := net.Pipe()
	_ = server.Close()
	return client, nil
}

func (r *dialRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.dialled)
}

func mustPolicy(t testing.TB, allowed, denied []string) *Policy {
	t.Helper()
	p, err := NewPolicy(allowed, denied)
	if err != nil {
		t.Fatalf("NewPolicy(%q, %q): %v", allowed, denied, err)
	}
	return p
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute) // far above any plausible wait
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
