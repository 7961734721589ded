package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookline/hookline/internal/keys"
	"github.com/hookline/hookline/internal/version"
)

func TestSendWireFormat(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	hmacKey := newKey(t, keys.HMACSHA256)
	edKey := newKey(t, keys.Ed25519)

	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{
		URL:     srv.URL + "/hooks/orders?tenant=7",
		Keys:    []keys.Key{hmacKey, edKey},
		Timeout: 10 * time.Second,
	}, orderCreated)

	if diff := cmp.Diff(Result{StatusCode: 200, Success: true}, res); diff != "" {
		t.Fatalf("Send result (-want +got):\n%s", diff)
	}
	got := rec.only(t)
	if got.Method != http.MethodPost || got.RequestURI != "/hooks/orders?tenant=7" {
		t.Errorf("request line = %s %s, want POST /hooks/orders?tenant=7", got.Method, got.RequestURI)
	}
	if string(got.Body) != orderCreatedBody {
		t.Errorf("body =\n%s\nwant\n%s", got.Body, orderCreatedBody)
	}
	ts := strconv.FormatInt(sentAt.Unix(), 10)
	wantHeader := http.Header{
		"Content-Length":    {strconv.Itoa(len(orderCreatedBody))},
		"Content-Type":      {"application/json"},
		"User-Agent":        {"Hookline/" + version.Version + " (+https://hookline.dev)"},
		"Webhook-Id":        {orderCreated.ID},
		"Webhook-Timestamp": {ts},
		"Webhook-Signature": {
			hmacKey.Sign(orderCreated.ID, sentAt.Unix(), []byte(orderCreatedBody)) + " " +
				edKey.Sign(orderCreated.ID, sentAt.Unix(), []byte(orderCreatedBody)),
		},
	}
	if diff := cmp.Diff(wantHeader, got.Header); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if sig := got.Header.Get("Webhook-Signature"); !strings.HasPrefix(sig, "v1,") || !strings.Contains(sig, " v1a,") {
		t.Errorf("webhook-signature %q: want a v1 entry then a v1a entry", sig)
	}
}

func TestSendUserAgentOverride(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock(), UserAgent: "Hookline/v9.9.9 (+https://hookline.dev)"}
	if res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated); !res.Success {
		t.Fatalf("Send failed: %+v", res)
	}
	if ua := rec.only(t).Header.Get("User-Agent"); ua != "Hookline/v9.9.9 (+https://hookline.dev)" {
		t.Fatalf("user-agent = %q", ua)
	}
}

func TestSendStaticHeadersCannotOverrideReserved(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	key := newKey(t, keys.HMACSHA256)
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{
		URL:  srv.URL,
		Keys: []keys.Key{key},
		Header: http.Header{
			// Keys as a map literal can be non-canonical; they must still
			// be recognised.
			"webhook-id":        {"forged-id"},
			"WEBHOOK-SIGNATURE": {"v1,Zm9yZ2Vk"},
			"Webhook-Timestamp": {"1"},
			"Webhook-Extra":     {"nope"},
			"content-type":      {"text/plain"},
			"User-Agent":        {"curl/8"},
			"Host":              {"evil.example"},
			"Connection":        {"close"},
			"Authorization":     {"Bearer t0ken-from-secret"},
			"x-tenant":          {"a", "b"},
		},
	}, orderCreated)
	if !res.Success {
		t.Fatalf("Send failed: %+v", res)
	}
	got := rec.only(t)
	want := http.Header{
		"Authorization":     {"Bearer t0ken-from-secret"},
		"X-Tenant":          {"a", "b"},
		"Content-Length":    {strconv.Itoa(len(orderCreatedBody))},
		"Content-Type":      {"application/json"},
		"User-Agent":        {DefaultUserAgent()},
		"Webhook-Id":        {orderCreated.ID},
		"Webhook-Timestamp": {strconv.FormatInt(sentAt.Unix(), 10)},
		"Webhook-Signature": {key.Sign(orderCreated.ID, sentAt.Unix(), []byte(orderCreatedBody))},
	}
	if diff := cmp.Diff(want, got.Header); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if got.Host != strings.TrimPrefix(srv.URL, "http://") {
		t.Errorf("Host = %q, want the URL's", got.Host)
	}
}

func TestSendHTTPStatusFailures(t *testing.T) {
	retryDate := sentAt.Add(90 * time.Second).Format(http.TimeFormat)
	for _, tc := range []struct {
		name       string
		status     int
		header     http.Header
		body       string
		want       Result
		wantPrefix string
	}{
		{
			name:   "500 with snippet",
			status: 500,
			body:   "upstream exploded\r\n\tat line 3\x00\x01",
			want:   Result{StatusCode: 500, Class: ClassHTTPStatus, Message: "HTTP 500: upstream exploded at line 3"},
		},
		{
			name:   "500 without body uses the status text",
			status: 500,
			want:   Result{StatusCode: 500, Class: ClassHTTPStatus, Message: "HTTP 500: Internal Server Error"},
		},
		{
			name:   "unknown status without body",
			status: 599,
			want:   Result{StatusCode: 599, Class: ClassHTTPStatus, Message: "HTTP 599"},
		},
		{
			name:   "404",
			status: 404,
			body:   `{"error":"no such hook"}`,
			want:   Result{StatusCode: 404, Class: ClassHTTPStatus, Message: `HTTP 404: {"error":"no such hook"}`},
		},
		{
			name:   "410",
			status: 410,
			body:   "gone",
			want:   Result{StatusCode: 410, Class: ClassHTTPStatus, Message: "HTTP 410: gone"},
		},
		{
			name:   "429 Retry-After seconds",
			status: 429,
			header: http.Header{"Retry-After": {"7"}},
			body:   "slow down",
			want:   Result{StatusCode: 429, Class: ClassHTTPStatus, Message: "HTTP 429: slow down", RetryAfter: 7 * time.Second},
		},
		{
			name:   "429 Retry-After HTTP date",
			status: 429,
			header: http.Header{"Retry-After": {retryDate}},
			want:   Result{StatusCode: 429, Class: ClassHTTPStatus, Message: "HTTP 429: Too Many Requests", RetryAfter: 90 * time.Second},
		},
		{
			name:   "503 Retry-After seconds",
			status: 503,
			header: http.Header{"Retry-After": {"120"}},
			body:   "upstream busy",
			want:   Result{StatusCode: 503, Class: ClassHTTPStatus, Message: "HTTP 503: upstream busy", RetryAfter: 2 * time.Minute},
		},
		{
			name:   "503 Retry-After HTTP date",
			status: 503,
			header: http.Header{"Retry-After": {retryDate}},
			body:   "upstream busy",
			want:   Result{StatusCode: 503, Class: ClassHTTPStatus, Message: "HTTP 503: upstream busy", RetryAfter: 90 * time.Second},
		},
		{
			name:   "503 Retry-After date in the past",
			status: 503,
			header: http.Header{"Retry-After": {sentAt.Add(-time.Minute).Format(http.TimeFormat)}},
			want:   Result{StatusCode: 503, Class: ClassHTTPStatus, Message: "HTTP 503: Service Unavailable"},
		},
		{
			name:   "503 Retry-After invalid",
			status: 503,
			header: http.Header{"Retry-After": {"soon"}},
			want:   Result{StatusCode: 503, Class: ClassHTTPStatus, Message: "HTTP 503: Service Unavailable"},
		},
		{
			name:   "Retry-After ignored on 500",
			status: 500,
			header: http.Header{"Retry-After": {"7"}},
			want:   Result{StatusCode: 500, Class: ClassHTTPStatus, Message: "HTTP 500: Internal Server Error"},
		},
		{
			name:       "long body cut to the snippet size",
			status:     502,
			body:       strings.Repeat("é", 1000),
			wantPrefix: "HTTP 502: éé",
			want:       Result{StatusCode: 502, Class: ClassHTTPStatus},
		},
		{
			name:   "201 is success",
			status: 201,
			body:   "created",
			want:   Result{StatusCode: 201, Success: true},
		},
		{
			name:   "204 is success",
			status: 204,
			want:   Result{StatusCode: 204, Success: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
			res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
			if tc.wantPrefix != "" {
				if !strings.HasPrefix(res.Message, tc.wantPrefix) || len(res.Message) > len("HTTP 502: ")+MaxSnippetBytes || !strings.HasSuffix(res.Message, "...") {
					t.Fatalf("Message = %q (%d bytes), want a cut snippet of at most %d bytes", res.Message, len(res.Message), MaxSnippetBytes)
				}
				res.Message = ""
			}
			if diff := cmp.Diff(tc.want, res); diff != "" {
				t.Fatalf("Send result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSendRedirectIsNeverFollowed(t *testing.T) {
	for _, code := range []int{301, 302, 303, 307, 308} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			elsewhere := &recorder{}
			other := httptest.NewServer(elsewhere)
			defer other.Close()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.URL+"/stolen", code)
			}))
			defer srv.Close()

			s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
			res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
			want := Result{StatusCode: code, Class: ClassRedirect, Message: fmt.Sprintf("HTTP %d: redirect not followed", code)}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Fatalf("Send result (-want +got):\n%s", diff)
			}
			if n := len(elsewhere.all()); n != 0 {
				t.Fatalf("the redirect target got %d requests, want 0", n)
			}
		})
	}
}

func TestSendTimeout(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		// Deliberately deaf to the request context: Send must give up on
		// its own, not because the receiver finished.
		<-release
	}))
	defer srv.Close()
	defer close(release)

	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}, Timeout: 300 * time.Millisecond}, orderCreated)
	select {
	case <-entered:
	default:
		t.Fatal("the receiver never got the request")
	}
	want := Result{Class: ClassTimeout, Message: "no response within 300ms"}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Fatalf("Send result (-want +got):\n%s", diff)
	}
}

func TestSendTimeoutWhileReadingBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		<-release
	}))
	defer srv.Close()
	defer close(release)

	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}, Timeout: 300 * time.Millisecond}, orderCreated)
	want := Result{StatusCode: 502, Class: ClassHTTPStatus, Message: "HTTP 502: partial"}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Fatalf("Send result (-want +got):\n%s", diff)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{
		URL:  "http://" + addr + "/hook?token=qs-s3cret",
		Keys: []keys.Key{newKey(t, keys.HMACSHA256)},
	}, orderCreated)
	if res.Class != ClassConnection || res.StatusCode != 0 || res.Success {
		t.Fatalf("Send result = %+v, want a ConnectionError", res)
	}
	if want := "dial tcp " + addr + ": connect: connection refused"; res.Message != want {
		t.Fatalf("Message = %q, want %q", res.Message, want)
	}
}

func TestSendConnectionClosedWithoutResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
	if res.Class != ClassConnection || !strings.Contains(res.Message, "EOF") {
		t.Fatalf("Send result = %+v, want a ConnectionError mentioning EOF", res)
	}
}

func TestSendCanceledContext(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(ctx, Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
	if diff := cmp.Diff(Result{Class: ClassConnection, Message: "request canceled"}, res); diff != "" {
		t.Fatalf("Send result (-want +got):\n%s", diff)
	}
}

func TestSendReadsAtMostMaxResponseBytes(t *testing.T) {
	var written atomic.Int64
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		w.WriteHeader(http.StatusInternalServerError)
		chunk := []byte(strings.Repeat("x", 32<<10))
		// Endless: only the client hanging up stops it.
		for {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()

	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock(), MaxResponseBytes: 4 << 10}
	res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}, Timeout: time.Minute}, orderCreated)
	if res.Class != ClassHTTPStatus || res.StatusCode != 500 {
		t.Fatalf("Send result = %+v, want HTTP 500", res)
	}
	wantMsg := "HTTP 500: " + strings.Repeat("x", MaxSnippetBytes-3) + "..."
	if res.Message != wantMsg {
		t.Fatalf("Message = %q, want %q", res.Message, wantMsg)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Minute): // far above any plausible wait
		t.Fatal("the receiver kept writing: the client did not hang up")
	}
	// What the receiver managed to write is what the client read plus what
	// the kernel buffered; reading to the end would have taken far more.
	if n := written.Load(); n > 64<<20 {
		t.Fatalf("receiver wrote %d bytes before the client hung up", n)
	}
}

func TestSendRedactsEchoedHeaderValues(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		// An echo endpoint reflecting the request headers back.
		_ = r.Header.Write(w)
	}))
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{
		URL:    srv.URL,
		Keys:   []keys.Key{newKey(t, keys.HMACSHA256)},
		Header: http.Header{"Authorization": {"Bearer t0ken-from-secret"}, "X-Api-Key": {"k3y-from-secret"}},
	}, orderCreated)
	if res.Class != ClassHTTPStatus || res.StatusCode != 400 {
		t.Fatalf("Send result = %+v, want HTTP 400", res)
	}
	if strings.Contains(res.Message, "t0ken-from-secret") || strings.Contains(res.Message, "k3y-from-secret") {
		t.Fatalf("Message leaks a header value: %q", res.Message)
	}
	if !strings.Contains(res.Message, "Authorization: [redacted]") {
		t.Fatalf("Message = %q, want the echoed Authorization redacted", res.Message)
	}
}

func TestSendInvalidRequest(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	key := newKey(t, keys.HMACSHA256)
	bad := orderCreated
	bad.Data = json.RawMessage(`{"orderId":`)
	for _, tc := range []struct {
		name    string
		target  Target
		m       Message
		wantMsg string
	}{
		{"invalid data", Target{URL: srv.URL, Keys: []keys.Key{key}}, bad, `encode delivery body for event "evt_2uS7pQ4ZRk"`},
		{"no keys", Target{URL: srv.URL}, orderCreated, "no signing key"},
		{"only a zero key", Target{URL: srv.URL, Keys: []keys.Key{{}}}, orderCreated, "no signing key"},
		{"unparsable URL", Target{URL: "http://[::1/hook?token=qs-s3cret", Keys: []keys.Key{key}}, orderCreated, "invalid URL"},
		{"other scheme", Target{URL: "ftp://example.com/hook?token=qs-s3cret", Keys: []keys.Key{key}}, orderCreated, "URL scheme must be http or https"},
		{"relative URL", Target{URL: "/hook?token=qs-s3cret", Keys: []keys.Key{key}}, orderCreated, "URL scheme must be http or https"},
		{"no host", Target{URL: "https:///hook?token=qs-s3cret", Keys: []keys.Key{key}}, orderCreated, "URL has no host"},
		{
			"header value with a line break",
			Target{URL: srv.URL, Keys: []keys.Key{key}, Header: http.Header{"X-Token": {"qs-s3cret\r\nX-Injected: 1"}}},
			orderCreated, "header X-Token has an invalid value",
		},
		{
			"header name with a space",
			Target{URL: srv.URL, Keys: []keys.Key{key}, Header: http.Header{"X Token": {"qs-s3cret"}}},
			orderCreated, `header name "X Token" is invalid`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
			res := s.Send(context.Background(), tc.target, tc.m)
			if res.Class != ClassInvalidRequest || !strings.Contains(res.Message, tc.wantMsg) {
				t.Fatalf("Send result = %+v, want InvalidRequest containing %q", res, tc.wantMsg)
			}
			if strings.Contains(res.Message, "qs-s3cret") {
				t.Fatalf("Message leaks the URL or a header value: %q", res.Message)
			}
		})
	}
	if n := len(rec.all()); n != 0 {
		t.Fatalf("receiver got %d requests, want 0", n)
	}
}

func TestSendEgressDenied(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	var dialed []string
	var mu sync.Mutex
	client := NewClient(ClientOptions{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return nil, &EgressDeniedError{Addr: addr, Reason: "loopback address"}
	}})
	s := &Sender{Client: client, Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
	addr := strings.TrimPrefix(srv.URL, "http://")
	want := Result{Class: ClassEgressDenied, Message: "egress to " + addr + " denied: loopback address"}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Fatalf("Send result (-want +got):\n%s", diff)
	}
	if n := len(rec.all()); n != 0 {
		t.Fatalf("receiver got %d requests, want 0", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(dialed, []string{addr}) {
		t.Fatalf("dialed %q, want [%s]", dialed, addr)
	}
}

func TestEgressDeniedErrorIs(t *testing.T) {
	err := fmt.Errorf("dial: %w", &EgressDeniedError{Addr: "169.254.169.254:80", Reason: "link-local address"})
	if !errors.Is(err, ErrEgressDenied) {
		t.Fatal("errors.Is(wrapped EgressDeniedError, ErrEgressDenied) = false")
	}
	if errors.Is(errors.New("egress denied"), ErrEgressDenied) {
		t.Fatal("an unrelated error with the same text matched ErrEgressDenied")
	}
	var target *EgressDeniedError
	if !errors.As(err, &target) || target.Reason != "link-local address" {
		t.Fatalf("errors.As = %v, %+v", target != nil, target)
	}
}

func TestSendReusesConnections(t *testing.T) {
	var opened atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	for i := range 3 {
		if res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated); !res.Success {
			t.Fatalf("attempt %d: %+v", i, res)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("receiver saw %d connections for 3 sequential deliveries, want 1", n)
	}
}

// redirectingDialer connects every dial to one real server, recording the
// address asked for, so a test can see where the client meant to go.
type redirectingDialer struct {
	to     string
	mu     sync.Mutex
	dialed []string
}

func (d *redirectingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, addr)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, d.to)
}

func (d *redirectingDialer) addrs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.dialed)
}

func TestNewClientIgnoresProxyEnvironment(t *testing.T) {
	proxy := &recorder{}
	proxySrv := httptest.NewServer(proxy)
	defer proxySrv.Close()
	t.Setenv("HTTP_PROXY", proxySrv.URL)
	t.Setenv("http_proxy", proxySrv.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	dialer := &redirectingDialer{to: strings.TrimPrefix(srv.URL, "http://")}
	s := &Sender{Client: NewClient(ClientOptions{DialContext: dialer.DialContext}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: "http://hooks.example.com/in", Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
	if !res.Success {
		t.Fatalf("Send failed: %+v", res)
	}
	if got := dialer.addrs(); !slices.Equal(got, []string{"hooks.example.com:80"}) {
		t.Fatalf("dialed %q, want the endpoint directly", got)
	}
	if got := rec.only(t); got.Host != "hooks.example.com" || got.RequestURI != "/in" {
		t.Fatalf("receiver got Host %q, URI %q", got.Host, got.RequestURI)
	}
	if n := len(proxy.all()); n != 0 {
		t.Fatalf("the environment's proxy got %d requests", n)
	}
}

func TestNewClientUsesConfiguredProxy(t *testing.T) {
	proxy := &recorder{}
	proxySrv := httptest.NewServer(proxy)
	defer proxySrv.Close()
	proxyURL, err := url.Parse(proxySrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t, keys.HMACSHA256)
	s := &Sender{Client: NewClient(ClientOptions{Proxy: http.ProxyURL(proxyURL)}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: "http://hooks.example.com/in", Keys: []keys.Key{key}}, orderCreated)
	if !res.Success {
		t.Fatalf("Send failed: %+v", res)
	}
	got := proxy.only(t)
	if got.RequestURI != "http://hooks.example.com/in" || string(got.Body) != orderCreatedBody {
		t.Fatalf("proxy got %s %s with body %s", got.Method, got.RequestURI, got.Body)
	}
	if sig := got.Header.Get("Webhook-Signature"); sig != key.Sign(orderCreated.ID, sentAt.Unix(), []byte(orderCreatedBody)) {
		t.Fatalf("proxied webhook-signature = %q", sig)
	}
}

func TestSendDefaultsClientAndClock(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	before := time.Now().Unix()
	res := (&Sender{}).Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
	after := time.Now().Unix()
	if !res.Success {
		t.Fatalf("Send failed: %+v", res)
	}
	ts, err := strconv.ParseInt(rec.only(t).Header.Get("Webhook-Timestamp"), 10, 64)
	if err != nil || ts < before || ts > after {
		t.Fatalf("webhook-timestamp %d (%v) not within [%d, %d]", ts, err, before, after)
	}
}
