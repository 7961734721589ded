// Package queuetest starts real NATS JetStream servers in process for tests
// of packages that use the queue in external mode.
package queuetest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// clusterFormTimeout is generous: on a loaded machine electing the meta
// leader of a fresh cluster can take several seconds.
const clusterFormTimeout = 60 * time.Second

// StartCluster starts n JetStream servers in process, routed to each other
// on 127.0.0.1, each with a file store in a temporary directory, and waits
// until the cluster has a meta leader and every server has caught up. It
// returns each server's client URL and a function that shuts server i down
// (a second call for the same i does nothing). Servers still running are
// shut down when the test ends.
func StartCluster(t testing.TB, n int) (urls []string, stop func(i int)) {
	t.Helper()
	if n < 1 {
		t.Fatalf("starting NATS cluster: need at least one server, got %d", n)
	}
	ports := freePorts(t, n)
	routes := make([]*url.URL, n)
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p))}
	}
	dir := t.TempDir()
	servers := make([]*server.Server, n)
	var mu sync.Mutex
	stopped := make([]bool, n)
	stop = func(i int) {
		mu.Lock()
		if stopped[i] || servers[i] == nil {
			mu.Unlock()
			return
		}
		stopped[i] = true
		mu.Unlock()
		servers[i].Shutdown()
		servers[i].WaitForShutdown()
	}
	t.Cleanup(func() {
		for i := range servers {
			stop(i)
		}
	})
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("hookline-test-%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   filepath.Join(dir, strconv.Itoa(i)),
			NoSigs:     true,
			NoLog:      true,
			Cluster: server.ClusterOpts{
				Name: "hookline-test",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: routes,
		}
		if n == 1 {
			// A cluster of one is not a JetStream cluster.
			opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
		}
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("creating NATS server %d: %v", i, err)
		}
		servers[i] = srv
		srv.Start()
	}
	for i, srv := range servers {
		if !srv.ReadyForConnections(clusterFormTimeout) {
			t.Fatalf("NATS server %d did not accept connections", i)
		}
		urls = append(urls, srv.ClientURL())
	}
	if n > 1 {
		waitForMetaLeader(t, servers)
	}
	return urls, stop
}

func waitForMetaLeader(t testing.TB, servers []*server.Server) {
	t.Helper()
	deadline := time.Now().Add(clusterFormTimeout)
	for time.Now().Before(deadline) {
		// Only the leader reports peers, and only those it has heard
		// from recently.
		ready, current := false, true
		for _, s := range servers {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == len(servers) {
				ready = true
			}
			current = current && s.JetStreamIsCurrent()
		}
		if ready && current {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("NATS cluster of %d servers elected no JetStream meta leader within %s", len(servers), clusterFormTimeout)
}

// freePorts finds n free TCP ports on 127.0.0.1. Cluster ports must be known
// before any server starts, since each server lists all routes.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		ls[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}
