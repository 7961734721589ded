package delivery

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/hookline/hookline/internal/keys"
)

// sentAt is the fake clock's time; whole seconds so that HTTP dates and
// webhook-timestamp are exact.
var sentAt = time.Date(2026, 5, 4, 10, 30, 0, 0, time.UTC)

var orderCreated = Message{
	ID:   "evt_2uS7pQ4ZRk",
	Type: "order.created",
	Time: time.Date(2026, 5, 4, 10, 29, 58, 123456789, time.UTC),
	Data: json.RawMessage(`{"orderId":"o-1001","amount":1999,"currency":"EUR"}`),
}

const orderCreatedBody = `{"type":"order.created","timestamp":"2026-05-04T10:29:58.123456789Z","data":{"orderId":"o-1001","amount":1999,"currency":"EUR"}}`

func newKey(t *testing.T, alg keys.Algorithm) keys.Key {
	t.Helper()
	k, err := keys.Generate(alg, nil)
	if err != nil {
		t.Fatalf("generate %s key: %v", alg, err)
	}
	return k
}

func fakeClock() *clocktesting.FakePassiveClock {
	return clocktesting.NewFakePassiveClock(sentAt)
}

// captured is one request as the receiver saw it.
type captured struct {
	Method     string
	RequestURI string
	Host       string
	ProtoMajor int
	Header     http.Header
	Body       []byte
}

// recorder is a receiver that records every request and answers with
// respond (200 with no body when nil).
type recorder struct {
	mu       sync.Mutex
	requests []captured
	respond  func(w http.ResponseWriter, r *http.Request)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec.mu.Lock()
	rec.requests = append(rec.requests, captured{
		Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, ProtoMajor: r.ProtoMajor,
		Header: r.Header.Clone(), Body: body,
	})
	rec.mu.Unlock()
	if rec.respond != nil {
		rec.respond(w, r)
	}
}

func (rec *recorder) all() []captured {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]captured(nil), rec.requests...)
}

// only returns the single request received, failing otherwise.
func (rec *recorder) only(t *testing.T) captured {
	t.Helper()
	got := rec.all()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(got))
	}
	return got[0]
}

func quietServer(srv *httptest.Server) *httptest.Server {
	// Handshake failures provoked on purpose would otherwise be logged.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	return srv
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
