package egress

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/keys"
)

// receiver is a loopback endpoint that counts connections and records
// requests, answering with respond (204 when nil).
type receiver struct {
	srv     *httptest.Server
	conns   atomic.Int64
	mu      sync.Mutex
	hosts   []string
	uris    []string
	respond func(w http.ResponseWriter, r *http.Request)
}

func newReceiver(t *testing.T, tls bool, respond func(w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.hosts = append(rc.hosts, r.Host)
		rc.uris = append(rc.uris, r.RequestURI)
		rc.mu.Unlock()
		if rc.respond != nil {
			rc.respond(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	rc.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.conns.Add(1)
		}
	}
	if tls {
		rc.srv.StartTLS()
	} else {
		rc.srv.Start()
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() (hosts, uris []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.hosts...), append([]string(nil), rc.uris...)
}

func (rc *receiver) port() string {
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	return port
}

func sendOnce(t *testing.T, opts delivery.ClientOptions, target string) delivery.Result {
	t.Helper()
	k, err := keys.Generate(keys.HMACSHA256, nil)
	if err != nil {
		t.Fatalf("generate a signing key: %v", err)
	}
	s := &delivery.Sender{Client: delivery.NewClient(opts)}
	return s.Send(context.Background(), delivery.Target{URL: target, Keys: []keys.Key{k}, Timeout: 20 * time.Second}, delivery.Message{
		ID:   "evt_egress_1",
		Type: "order.created",
		Time: time.Date(2026, 5, 4, 10, 30, 0, 0, time.UTC),
		Data: json.RawMessage(`{"orderId":"o-1"}`),
	})
}

var ignoreLatency = cmpopts.IgnoreFields(delivery.Result{}, "Latency")

func TestSendToLoopbackDeniedByDefault(t *testing.T) {
	rc := newReceiver(t, false, nil)
	d := &Dialer{}
	res := sendOnce(t, delivery.ClientOptions{DialContext: d.DialContext}, rc.srv.URL+"/hooks?token=s3cr3t")

	want := delivery.Result{
		Class:   delivery.ClassEgressDenied,
		Message: "egress to " + rc.srv.Listener.Addr().String() + " denied: loopback address",
	}
	if diff := cmp.Diff(want, res, ignoreLatency); diff != "" {
		t.Fatalf("Send result (-want +got):\n%s", diff)
	}
	if n := rc.conns.Load(); n != 0 {
		t.Errorf("receiver saw %d connections, want none", n)
	}
	if hosts, _ := rc.requests(); len(hosts) != 0 {
		t.Errorf("receiver saw %d requests, want none", len(hosts))
	}
}

func TestSendToAllowedLoopback(t *testing.T) {
	rc := newReceiver(t, false, nil)
	d := &Dialer{Policy: mustPolicy(t, []string{"127.0.0.1/32"}, nil)}
	res := sendOnce(t, delivery.ClientOptions{DialContext: d.DialContext}, rc.srv.URL+"/hooks")

	if diff := cmp.Diff(delivery.Result{StatusCode: http.StatusNoContent, Success: true}, res, ignoreLatency); diff != "" {
		t.Fatalf("Send result (-want +got):\n%s", diff)
	}
	if _, uris := rc.requests(); !cmp.Equal(uris, []string{"/hooks"}) {
		t.Errorf("receiver saw requests %q, want [/hooks]", uris)
	}
}

// TestSendByNameDialsTheVettedAddress shows a name dialled by the address
// it was judged by, while the request and TLS still use the name.
func TestSendByNameDialsTheVettedAddress(t *testing.T) {
	rc := newReceiver(t, true, nil)
	roots := x509.NewCertPool()
	roots.AddCert(rc.srv.Certificate())
	res := &fakeResolver{answers: map[string][]string{"example.com": {"127.0.0.1"}}}
	rec := &dialRecorder{through: true}
	d := &Dialer{Policy: mustPolicy(t, []string{"127.0.0.1/32"}, nil), Resolver: res, dial: rec.dial}

	// httptest's certificate is for example.com (and loopback addresses).
	target := "https://" + net.JoinHostPort("example.com", rc.port()) + "/hooks"
	got := sendOnce(t, delivery.ClientOptions{DialContext: d.DialContext, RootCAs: roots}, target)

	if diff := cmp.Diff(delivery.Result{StatusCode: http.StatusNoContent, Success: true}, got, ignoreLatency); diff != "" {
		t.Fatalf("Send result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"127.0.0.1:" + rc.port()}, rec.all()); diff != "" {
		t.Errorf("dialled (-want +got):\n%s", diff)
	}
	if hosts, _ := rc.requests(); !cmp.Equal(hosts, []string{"example.com:" + rc.port()}) {
		t.Errorf("receiver saw Host %q, want example.com:%s", hosts, rc.port())
	}
}

func TestSendRedirectNotFollowed(t *testing.T) {
	for _, location := range []string{
		"http://169.254.169.254/latest/meta-data/",
		"http://[::1]:%PORT%/",
		"http://metadata.example/computeMetadata/v1/",
	} {
		t.Run(location, func(t *testing.T) {
			rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request) {
				_, port, _ := net.SplitHostPort(r.Host)
				w.Header().Set("Location", strings.ReplaceAll(location, "%PORT%", port))
				w.WriteHeader(http.StatusFound)
			})
			res := &fakeResolver{answers: map[string][]string{"metadata.example": {"169.254.169.254"}}}
			rec := &dialRecorder{through: true}
			d := &Dialer{Policy: mustPolicy(t, []string{"127.0.0.1/32"}, nil), Resolver: res, dial: rec.dial}

			got := sendOnce(t, delivery.ClientOptions{DialContext: d.DialContext}, rc.srv.URL+"/hooks")

			want := delivery.Result{StatusCode: http.StatusFound, Class: delivery.ClassRedirect, Message: "HTTP 302: redirect not followed"}
			if diff := cmp.Diff(want, got, ignoreLatency); diff != "" {
				t.Fatalf("Send result (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{rc.srv.Listener.Addr().String()}, rec.all()); diff != "" {
				t.Errorf("dialled (-want +got):\n%s", diff)
			}
			if len(res.lookups) != 0 {
				t.Errorf("resolver was asked %q, want nothing", res.lookups)
			}
			if _, uris := rc.requests(); !cmp.Equal(uris, []string{"/hooks"}) {
				t.Errorf("receiver saw requests %q, want only /hooks", uris)
			}
		})
	}
}

// TestSendThroughProxy shows that with a proxy only the proxy's address is
// dialled and judged; the endpoint's name is the proxy's to resolve.
func TestSendThroughProxy(t *testing.T) {
	proxy := newReceiver(t, false, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	proxyURL, err := url.Parse(proxy.srv.URL)
	if err != nil {
		t.Fatalf("parse the proxy URL: %v", err)
	}
	const target = "http://hooks.example.com/orders"

	t.Run("proxy address denied", func(t *testing.T) {
		d := &Dialer{Resolver: &fakeResolver{}}
		got := sendOnce(t, delivery.ClientOptions{DialContext: d.DialContext, Proxy: http.ProxyURL(proxyURL)}, target)
		if got.Class != delivery.ClassEgressDenied {
			t.Fatalf("Send through a loopback proxy: %+v, want class EgressDenied", got)
		}
		if n := proxy.conns.Load(); n != 0 {
			t.Errorf("proxy saw %d connections, want none", n)
		}
	})
	t.Run("proxy address allowed", func(t *testing.T) {
		res := &fakeResolver{}
		rec := &dialRecorder{through: true}
		d := &Dialer{Policy: mustPolicy(t, []string{"127.0.0.1/32"}, nil), Resolver: res, dial: rec.dial}
		got := sendOnce(t, delivery.ClientOptions{DialContext: d.DialContext, Proxy: http.ProxyURL(proxyURL)}, target)
		if diff := cmp.Diff(delivery.Result{StatusCode: http.StatusOK, Success: true}, got, ignoreLatency); diff != "" {
			t.Fatalf("Send result (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{proxy.srv.Listener.Addr().String()}, rec.all()); diff != "" {
			t.Errorf("dialled (-want +got):\n%s", diff)
		}
		if len(res.lookups) != 0 {
			t.Errorf("resolver was asked %q, want nothing", res.lookups)
		}
		if _, uris := proxy.requests(); !cmp.Equal(uris, []string{target}) {
			t.Errorf("proxy saw requests %q, want [%s]", uris, target)
		}
	})
}
