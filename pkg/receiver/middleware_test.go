package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// received is what the wrapped handler saw.
type received struct {
	event   Event
	ok      bool
	body    []byte
	ctxBody int64
}

// sink is a handler behind the middleware that records every call and
// answers with respond (202 "accepted" when nil).
type sink struct {
	mu      sync.Mutex
	calls   []received
	respond func(w http.ResponseWriter, r *http.Request)
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	e, ok := EventFrom(r.Context())
	s.mu.Lock()
	s.calls = append(s.calls, received{event: e, ok: ok, body: body, ctxBody: r.ContentLength})
	s.mu.Unlock()
	if s.respond != nil {
		s.respond(w, r)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, "accepted")
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func (s *sink) last(t *testing.T) received {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) == 0 {
		t.Fatal("handler not called")
	}
	return s.calls[len(s.calls)-1]
}

// fixture is a real HTTP server running the middleware.
type fixture struct {
	srv   *httptest.Server
	next  *sink
	clock *testClock
	key   hmacPair
	logs  *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newFixture(t *testing.T, opts MiddlewareOptions) *fixture {
	t.Helper()
	f := &fixture{next: &sink{}, clock: newTestClock(), key: newHMAC(t, 1), logs: &syncBuffer{}}
	if opts.Keys == nil {
		opts.Keys = StaticKeys{f.key.key}
	}
	opts.Now = f.clock.Now
	opts.Logger = slog.New(slog.NewJSONHandler(f.logs, nil))
	f.srv = httptest.NewServer(Middleware(f.next, opts))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(f.srv.Close)
	return f
}

// signed returns the headers of a delivery of body with id, signed now.
func (f *fixture) signed(id, body string) http.Header {
	ts := unix(f.clock.Now())
	return webhookHeader(id, ts, signV1(f.key.secret, id, ts, []byte(body)))
}

// response is an answer as the client saw it.
type response struct {
	status int
	header http.Header
	body   string
}

// code returns the "error" member of a JSON error answer.
func (r response) code(t *testing.T) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("answer %d %q is not a JSON error: %v", r.status, r.body, err)
	}
	if r.header.Get("Content-Type") != "application/json" {
		t.Errorf("content-type %q", r.header.Get("Content-Type"))
	}
	return e.Error
}

func (f *fixture) do(t *testing.T, method string, header http.Header, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+"/hooks", body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (f *fixture) post(t *testing.T, header http.Header, body string) response {
	t.Helper()
	return f.do(t, http.MethodPost, header, strings.NewReader(body))
}

func TestMiddlewarePassesVerifiedEvent(t *testing.T) {
	f := newFixture(t, MiddlewareOptions{})
	got := f.post(t, f.signed(testID, testBody), testBody)
	if got.status != http.StatusAccepted || got.body != "accepted" {
		t.Fatalf("answer %d %q, want the handler's 202 accepted", got.status, got.body)
	}
	r := f.next.last(t)
	want := Event{
		ID:        testID,
		Type:      "order.created",
		Timestamp: time.Date(2026, 5, 4, 10, 29, 58, 123456789, time.UTC),
		Data:      json.RawMessage(`{"orderId":"o-1001","amount":1999,"currency":"EUR"}`),
	}
	if !r.ok || r.event.ID != want.ID || r.event.Type != want.Type || !r.event.Timestamp.Equal(want.Timestamp) || string(r.event.Data) != string(want.Data) {
		t.Fatalf("EventFrom = %+v, %v; want %+v", r.event, r.ok, want)
	}
	if string(r.body) != testBody || r.ctxBody != int64(len(testBody)) {
		t.Fatalf("handler read body %q (length %d), want the raw body", r.body, r.ctxBody)
	}
}

func TestMiddlewareRefusals(t *testing.T) {
	other := newHMAC(t, 2)
	big := `{"type":"a","data":"` + strings.Repeat("x", 100) + `"}`
	for _, tc := range []struct {
		name   string
		opts   MiddlewareOptions
		method string
		header func(f *fixture) http.Header
		body   string
		status int
		code   string
	}{
		{name: "GET", method: http.MethodGet, header: func(f *fixture) http.Header { return f.signed(testID, "") }, status: 405, code: "method_not_allowed"},
		{name: "PUT", method: http.MethodPut, header: func(f *fixture) http.Header { return f.signed(testID, testBody) }, body: testBody, status: 405, code: "method_not_allowed"},
		{name: "no headers", header: func(*fixture) http.Header { return nil }, body: testBody, status: 400, code: "missing_header"},
		{name: "bad timestamp", header: func(f *fixture) http.Header {
			h := f.signed(testID, testBody)
			h.Set(HeaderTimestamp, "yesterday")
			return h
		}, body: testBody, status: 400, code: "invalid_timestamp"},
		{name: "bad signature header", header: func(f *fixture) http.Header {
			h := f.signed(testID, testBody)
			h.Set(HeaderSignature, "sha256=abc")
			return h
		}, body: testBody, status: 400, code: "invalid_signature_header"},
		{name: "bad ID", header: func(f *fixture) http.Header { return f.signed("evt{1}", testBody) }, body: testBody, status: 400, code: "invalid_id"},
		{name: "tampered body", header: func(f *fixture) http.Header { return f.signed(testID, testBody) }, body: strings.Replace(testBody, "EUR", "USD", 1), status: 401, code: "no_matching_signature"},
		{name: "wrong key", header: func(f *fixture) http.Header {
			ts := unix(f.clock.Now())
			return webhookHeader(testID, ts, signV1(other.secret, testID, ts, []byte(testBody)))
		}, body: testBody, status: 401, code: "no_matching_signature"},
		{name: "too old", header: func(f *fixture) http.Header {
			ts := unix(f.clock.Now().Add(-6 * time.Minute))
			return webhookHeader(testID, ts, signV1(f.key.secret, testID, ts, []byte(testBody)))
		}, body: testBody, status: 401, code: "timestamp_too_old"},
		{name: "too new", header: func(f *fixture) http.Header {
			ts := unix(f.clock.Now().Add(6 * time.Minute))
			return webhookHeader(testID, ts, signV1(f.key.secret, testID, ts, []byte(testBody)))
		}, body: testBody, status: 401, code: "timestamp_too_new"},
		{name: "custom tolerance", opts: MiddlewareOptions{Tolerance: time.Minute}, header: func(f *fixture) http.Header {
			ts := unix(f.clock.Now().Add(-2 * time.Minute))
			return webhookHeader(testID, ts, signV1(f.key.secret, testID, ts, []byte(testBody)))
		}, body: testBody, status: 401, code: "timestamp_too_old"},
		{name: "signed body not JSON", header: func(f *fixture) http.Header { return f.signed(testID, "hello") }, body: "hello", status: 400, code: "invalid_payload"},
		{name: "signed JSON array", header: func(f *fixture) http.Header { return f.signed(testID, "[1]") }, body: "[1]", status: 400, code: "invalid_payload"},
		{name: "signed object without type", header: func(f *fixture) http.Header { return f.signed(testID, `{"data":1}`) }, body: `{"data":1}`, status: 400, code: "invalid_payload"},
		{name: "signed object with bad timestamp", header: func(f *fixture) http.Header { return f.signed(testID, `{"type":"a","timestamp":"now"}`) }, body: `{"type":"a","timestamp":"now"}`, status: 400, code: "invalid_payload"},
		{name: "empty body", header: func(f *fixture) http.Header { return f.signed(testID, "") }, status: 400, code: "invalid_payload"},
		{name: "too large", opts: MiddlewareOptions{MaxBodyBytes: int64(len(big) - 1)}, header: func(f *fixture) http.Header { return f.signed(testID, big) }, body: big, status: 413, code: "body_too_large"},
		{name: "keys unavailable", opts: MiddlewareOptions{Keys: failingKeys{}}, header: func(f *fixture) http.Header { return f.signed(testID, testBody) }, body: testBody, status: 503, code: "keys_unavailable"},
		{name: "no keys", opts: MiddlewareOptions{Keys: StaticKeys{}}, header: func(f *fixture) http.Header { return f.signed(testID, testBody) }, body: testBody, status: 503, code: "no_keys"},
		{name: "source not allowed", opts: MiddlewareOptions{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, header: func(f *fixture) http.Header { return f.signed(testID, testBody) }, body: testBody, status: 403, code: "source_not_allowed"},
		// The source is checked first: nothing else is revealed to it.
		{name: "source not allowed, GET", opts: MiddlewareOptions{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, method: http.MethodGet, header: func(*fixture) http.Header { return nil }, status: 403, code: "source_not_allowed"},
		{name: "forwarded address ignored without trusted proxies", opts: MiddlewareOptions{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, header: func(f *fixture) http.Header {
			h := f.signed(testID, testBody)
			h.Set("X-Forwarded-For", "10.1.2.3")
			return h
		}, body: testBody, status: 403, code: "source_not_allowed"},
		{name: "client-written forwarded address", opts: MiddlewareOptions{
			AllowedCIDRs:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		}, header: func(f *fixture) http.Header {
			h := f.signed(testID, testBody)
			h.Set("X-Forwarded-For", "10.1.2.3, 192.0.2.1")
			return h
		}, body: testBody, status: 403, code: "source_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			got := f.do(t, method, tc.header(f), strings.NewReader(tc.body))
			if got.status != tc.status || got.code(t) != tc.code {
				t.Fatalf("answer %d %s, want %d %s", got.status, got.body, tc.status, tc.code)
			}
			if n := f.next.count(); n != 0 {
				t.Fatalf("handler called %d times", n)
			}
			if tc.status == 405 && got.header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", got.header.Get("Allow"))
			}
			logs := f.logs.String()
			if !strings.Contains(logs, `"msg":"Refused webhook delivery"`) || !strings.Contains(logs, `"reason":"`+tc.code+`"`) {
				t.Errorf("refusal not logged: %s", logs)
			}
			for _, secret := range [][]byte{f.key.secret, other.secret} {
				if s := b64of(secret); strings.Contains(logs, s) || strings.Contains(got.body, s) {
					t.Fatalf("secret leaked: %s / %s", logs, got.body)
				}
			}
			if sig := f.signed(testID, testBody).Get(HeaderSignature); strings.Contains(logs, sig[3:]) {
				t.Fatalf("signature logged: %s", logs)
			}
		})
	}
}

type failingKeys struct{}

func (failingKeys) Keys() ([]Key, error) { return nil, errors.New("volume not mounted") }

func TestMiddlewareBodyCap(t *testing.T) {
	body := `{"type":"a","data":"` + strings.Repeat("x", 1000) + `"}`
	f := newFixture(t, MiddlewareOptions{MaxBodyBytes: int64(len(body))})
	// Exactly at the cap passes.
	if got := f.post(t, f.signed("evt_1", body), body); got.status != http.StatusAccepted {
		t.Fatalf("body at the cap: %d %s", got.status, got.body)
	}
	// One byte over, announced by content-length or streamed without one.
	over := body[:len(body)-1] + `x"}`
	for _, r := range []io.Reader{strings.NewReader(over), io.MultiReader(strings.NewReader(over))} {
		got := f.do(t, http.MethodPost, f.signed("evt_2", over), r)
		if got.status != http.StatusRequestEntityTooLarge || got.code(t) != "body_too_large" {
			t.Fatalf("body over the cap: %d %s", got.status, got.body)
		}
	}
	if n := f.next.count(); n != 1 {
		t.Fatalf("handler called %d times, want 1", n)
	}
	// The default cap is 1 MiB.
	d := newFixture(t, MiddlewareOptions{})
	huge := `{"type":"a","data":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`
	if got := d.post(t, d.signed("evt_3", huge), huge); got.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("body over the default cap: %d", got.status)
	}
}

func TestMiddlewareSourceAllowList(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tc := range []struct {
		name string
		opts MiddlewareOptions
		xff  []string
		want int
	}{
		{"peer allowed", MiddlewareOptions{AllowedCIDRs: loopback}, nil, 202},
		{"one of several prefixes", MiddlewareOptions{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("127.0.0.1/32")}}, nil, 202},
		{"no list allows all", MiddlewareOptions{}, []string{"192.0.2.1"}, 202},
		{"via trusted proxy", MiddlewareOptions{
			AllowedCIDRs:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			TrustedProxies: loopback,
		}, []string{"10.1.2.3"}, 202},
		{"via two trusted proxies", MiddlewareOptions{
			AllowedCIDRs:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			TrustedProxies: append([]netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}, loopback...),
		}, []string{"203.0.113.9, 10.1.2.3", "192.168.1.1"}, 202},
		{"proxy forwarding a disallowed client", MiddlewareOptions{
			AllowedCIDRs:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			TrustedProxies: loopback,
		}, []string{"203.0.113.9"}, 403},
		{"garbled hop", MiddlewareOptions{
			AllowedCIDRs:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			TrustedProxies: loopback,
		}, []string{"10.1.2.3, unknown"}, 403},
		{"proxy without forwarded header is the source", MiddlewareOptions{
			AllowedCIDRs:   loopback,
			TrustedProxies: loopback,
		}, nil, 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts)
			h := f.signed(testID, testBody)
			for _, v := range tc.xff {
				h.Add("X-Forwarded-For", v)
			}
			if got := f.post(t, h, testBody); got.status != tc.want {
				t.Fatalf("answer %d %s, want %d", got.status, got.body, tc.want)
			}
		})
	}
}

func TestSourceAddress(t *testing.T) {
	m := &middleware{proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	for _, tc := range []struct {
		remote string
		xff    string
		want   string // "" means no usable address
	}{
		{"192.0.2.1:443", "", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:443", "", "192.0.2.1"},
		{"[fe80::1%eth0]:443", "", "fe80::1"},
		{"192.0.2.1", "", "192.0.2.1"},
		{"@", "", ""},
		{"", "", ""},
		{"192.0.2.1:443", "10.9.9.9", "192.0.2.1"}, // not from a proxy: header ignored
		{"10.0.0.1:443", "", "10.0.0.1"},
		{"10.0.0.1:443", "198.51.100.7", "198.51.100.7"},
		{"10.0.0.1:443", "198.51.100.7:5555", "198.51.100.7"},
		{"10.0.0.1:443", "1.1.1.1, 198.51.100.7, 10.0.0.2", "198.51.100.7"},
		{"10.0.0.1:443", "10.0.0.3, 10.0.0.2", "10.0.0.3"},
		{"10.0.0.1:443", " , 198.51.100.7 ,", "198.51.100.7"},
		{"[fd00::1]:443", "2001:db8::5", "2001:db8::5"},
		{"10.0.0.1:443", "198.51.100.7, bogus", ""},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		addr, ok := m.source(r)
		got := ""
		if ok {
			got = addr.String()
		}
		if got != tc.want {
			t.Errorf("source(%q, XFF %q) = %q, want %q", tc.remote, tc.xff, got, tc.want)
		}
	}
}

func TestMiddlewareDuplicates(t *testing.T) {
	f := newFixture(t, MiddlewareOptions{})
	first := f.signed(testID, testBody)
	if got := f.post(t, first, testBody); got.status != http.StatusAccepted {
		t.Fatalf("first delivery: %d %s", got.status, got.body)
	}
	duplicate := func(h http.Header) {
		t.Helper()
		got := f.post(t, h, testBody)
		if got.status != http.StatusOK || got.body != `{"message":"event already processed","status":"duplicate"}`+"\n" {
			t.Fatalf("duplicate: %d %q", got.status, got.body)
		}
	}
	// The same request replayed, then the sender's retry (same ID, new
	// timestamp and signature) after a lost acknowledgement.
	duplicate(first)
	f.clock.Advance(4 * time.Minute)
	duplicate(f.signed(testID, testBody))
	if n := f.next.count(); n != 1 {
		t.Fatalf("handler called %d times, want 1", n)
	}
	// A duplicate must still be authentic.
	forged := f.signed(testID, testBody)
	forged.Set(HeaderSignature, "v1,"+b64of(make([]byte, 32)))
	if got := f.post(t, forged, testBody); got.status != http.StatusUnauthorized {
		t.Fatalf("forged duplicate: %d", got.status)
	}
	// Another ID is processed.
	if got := f.post(t, f.signed("evt_other", testBody), testBody); got.status != http.StatusAccepted {
		t.Fatalf("other event: %d", got.status)
	}
	// The ID is forgotten once the tolerance has passed since it was
	// processed (the retry at +4m does not extend it).
	f.clock.Advance(time.Minute + time.Second)
	if got := f.post(t, f.signed(testID, testBody), testBody); got.status != http.StatusAccepted {
		t.Fatalf("after the window: %d %s", got.status, got.body)
	}
	if n := f.next.count(); n != 3 {
		t.Fatalf("handler called %d times, want 3", n)
	}
	if !strings.Contains(f.logs.String(), `"msg":"Acknowledged duplicate webhook delivery","webhookID":"`+testID+`"`) {
		t.Errorf("duplicate not logged: %s", f.logs.String())
	}
}

func TestMiddlewareForgetsFailedDeliveries(t *testing.T) {
	f := newFixture(t, MiddlewareOptions{})
	var calls atomic.Int32
	f.next.respond = func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			http.Error(w, "database down", http.StatusInternalServerError)
		case 2:
			panic(http.ErrAbortHandler)
		case 3:
			w.WriteHeader(http.StatusTooManyRequests)
		case 4:
			// Nothing written: net/http answers 200.
		}
	}
	wantStatus := []int{500, 0, 429, 200}
	for i, want := range wantStatus {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL, strings.NewReader(testBody))
		for k, v := range f.signed(testID, testBody) {
			req.Header[k] = v
		}
		resp, err := f.srv.Client().Do(req)
		if want == 0 {
			if err == nil {
				_ = resp.Body.Close()
				t.Fatalf("attempt %d: the aborted handler produced a %d", i+1, resp.StatusCode)
			}
			continue
		}
		if err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("attempt %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	got := f.post(t, f.signed(testID, testBody), testBody)
	if got.status != http.StatusOK || !strings.Contains(got.body, "duplicate") || calls.Load() != 4 {
		t.Fatalf("after a success: %d %s, handler called %d times", got.status, got.body, calls.Load())
	}
}

func TestMiddlewareConcurrentDuplicate(t *testing.T) {
	f := newFixture(t, MiddlewareOptions{})
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	f.next.respond = func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	}
	h := f.signed(testID, testBody)
	done := make(chan response)
	go func() { done <- f.post(t, h, testBody) }()
	<-entered
	got := f.post(t, h, testBody)
	if got.status != http.StatusConflict || got.code(t) != "in_progress" {
		t.Fatalf("concurrent duplicate: %d %s", got.status, got.body)
	}
	close(release)
	if first := <-done; first.status != http.StatusOK {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	if got := f.post(t, h, testBody); got.status != http.StatusOK || !strings.Contains(got.body, "duplicate") {
		t.Fatalf("after the first finished: %d %s", got.status, got.body)
	}
	if calls.Load() != 1 {
		t.Fatalf("handler called %d times", calls.Load())
	}
}

func TestMiddlewareRememberedIDsBound(t *testing.T) {
	f := newFixture(t, MiddlewareOptions{MaxRememberedIDs: 2})
	for _, id := range []string{"a", "b"} {
		if got := f.post(t, f.signed(id, testBody), testBody); got.status != http.StatusAccepted {
			t.Fatalf("%s: %d", id, got.status)
		}
	}
	got := f.post(t, f.signed("c", testBody), testBody)
	if got.status != http.StatusServiceUnavailable || got.code(t) != "busy" || got.header.Get("Retry-After") != "30" {
		t.Fatalf("third ID: %d %s Retry-After %q", got.status, got.body, got.header.Get("Retry-After"))
	}
	// Duplicates of remembered IDs are still recognised when full.
	if got := f.post(t, f.signed("a", testBody), testBody); got.status != http.StatusOK {
		t.Fatalf("duplicate when full: %d", got.status)
	}
	f.clock.Advance(DefaultTolerance)
	if got := f.post(t, f.signed("c", testBody), testBody); got.status != http.StatusAccepted {
		t.Fatalf("third ID once the others expired: %d %s", got.status, got.body)
	}
	if n := f.next.count(); n != 3 {
		t.Fatalf("handler called %d times, want 3", n)
	}
}

func TestMiddlewareDuplicateSuppressionOff(t *testing.T) {
	f := newFixture(t, MiddlewareOptions{MaxRememberedIDs: -1})
	h := f.signed(testID, testBody)
	for range 2 {
		if got := f.post(t, h, testBody); got.status != http.StatusAccepted {
			t.Fatalf("delivery: %d", got.status)
		}
	}
	if n := f.next.count(); n != 2 {
		t.Fatalf("handler called %d times, want 2", n)
	}
}

func TestMiddlewareWithKeySource(t *testing.T) {
	a, b := newHMAC(t, 1), newHMAC(t, 2)
	vol := newSecretVolume(t, map[string]string{SigningKeyFile: encodedSecret(a)})
	src, err := NewKeySource(vol.dir, KeySourceOptions{CheckInterval: time.Nanosecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, MiddlewareOptions{Keys: src})
	send := func(p hmacPair, id string) int {
		ts := unix(f.clock.Now())
		return f.post(t, webhookHeader(id, ts, signV1(p.secret, id, ts, []byte(testBody))), testBody).status
	}
	if got := send(b, "e1"); got != http.StatusUnauthorized {
		t.Fatalf("new key before the rotation: %d", got)
	}
	vol.publish(map[string]string{SigningKeyFile: encodedSecret(b), PreviousSigningKeyFile: encodedSecret(a)})
	if got, got2 := send(b, "e2"), send(a, "e3"); got != http.StatusAccepted || got2 != http.StatusAccepted {
		t.Fatalf("during the overlap: new key %d, old key %d", got, got2)
	}
	vol.publish(map[string]string{SigningKeyFile: encodedSecret(b)})
	if got := send(a, "e4"); got != http.StatusUnauthorized {
		t.Fatalf("old key after the overlap: %d", got)
	}
}

func TestMiddlewarePanicsOnMisuse(t *testing.T) {
	for name, fn := range map[string]func(){
		"nil next": func() { Middleware(nil, MiddlewareOptions{Keys: StaticKeys{}}) },
		"nil keys": func() { Middleware(&sink{}, MiddlewareOptions{}) },
		"zero prefix": func() {
			Middleware(&sink{}, MiddlewareOptions{Keys: StaticKeys{}, AllowedCIDRs: []netip.Prefix{{}}})
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}

func TestDecodeEvent(t *testing.T) {
	for _, tc := range []struct {
		body    string
		want    Event
		invalid bool
	}{
		{body: `{"type":"a.b","timestamp":"2026-05-04T10:29:58Z","data":{"x":1}}`, want: Event{ID: "id", Type: "a.b", Timestamp: time.Date(2026, 5, 4, 10, 29, 58, 0, time.UTC), Data: json.RawMessage(`{"x":1}`)}},
		{body: " \n{\"type\":\"a\",\"data\":null,\"extra\":[1]}", want: Event{ID: "id", Type: "a", Data: json.RawMessage("null")}},
		{body: `{"type":"a","timestamp":"2026-05-04T12:29:58.5+02:00"}`, want: Event{ID: "id", Type: "a", Timestamp: time.Date(2026, 5, 4, 10, 29, 58, 5e8, time.UTC)}},
		{body: `{"type":""}`, invalid: true},
		{body: `{"type":1}`, invalid: true},
		{body: `{"type":"a"`, invalid: true},
		{body: `{"type":"a"} x`, invalid: true},
		{body: `{"type":"a","timestamp":1}`, invalid: true},
		{body: `"type"`, invalid: true},
		{body: `null`, invalid: true},
		{body: ``, invalid: true},
	} {
		got, err := DecodeEvent("id", []byte(tc.body))
		if tc.invalid {
			if !errors.Is(err, ErrInvalidPayload) {
				t.Errorf("DecodeEvent(%q) = %+v, %v; want ErrInvalidPayload", tc.body, got, err)
			}
			continue
		}
		if err != nil || got.ID != tc.want.ID || got.Type != tc.want.Type || !got.Timestamp.Equal(tc.want.Timestamp) || string(got.Data) != string(tc.want.Data) {
			t.Errorf("DecodeEvent(%q) = %+v, %v; want %+v", tc.body, got, err, tc.want)
		}
	}
	if _, ok := EventFrom(t.Context()); ok {
		t.Error("EventFrom found an event in an empty context")
	}
	e, ok := EventFrom(WithEvent(t.Context(), Event{ID: "x"}))
	if !ok || e.ID != "x" {
		t.Errorf("EventFrom(WithEvent) = %+v, %v", e, ok)
	}
}
