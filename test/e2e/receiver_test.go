package e2e

import (
	"encoding/pem"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// delivery is one request a receiver got.
type delivery struct {
	Header http.Header
	Body   []byte
	At     time.Time
}

// receiver is a real HTTP server recording every request; respond decides
// each answer from the number of requests so far with the same webhook-id
// (1 for the first).
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []delivery
	byID map[string]int
	// ackedByID counts, per webhook-id, the requests read whole and
	// answered 2xx: what the receiver acknowledged.
	ackedByID map[string]int
	respond   func(w http.ResponseWriter, attempt int)
	// counting receivers keep no request, only the counts.
	counting bool
	total    int
}

func newReceiver(t *testing.T, respond func(w http.ResponseWriter, attempt int)) *receiver {
	t.Helper()
	return listen(t, &receiver{byID: map[string]int{}, ackedByID: map[string]int{}, respond: respond})
}

// newCountingReceiver is newReceiver keeping only the counts of requests
// and acknowledgements by webhook-id, for endpoints that get very many.
func newCountingReceiver(t *testing.T, respond func(w http.ResponseWriter, attempt int)) *receiver {
	t.Helper()
	return listen(t, &receiver{byID: map[string]int{}, ackedByID: map[string]int{}, respond: respond, counting: true})
}

// listen serves r over HTTP until the test ends.
func listen(t *testing.T, r *receiver) *receiver {
	t.Helper()
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// newWrappedReceiver is newReceiver whose recording handler is wrapped,
// for receivers that answer some requests themselves.
func newWrappedReceiver(t *testing.T, wrap func(record http.Handler) http.Handler) *receiver {
	t.Helper()
	r := &receiver{byID: map[string]int{}, ackedByID: map[string]int{}}
	r.Server = httptest.NewServer(wrap(http.HandlerFunc(r.serve)))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, readErr := io.ReadAll(req.Body)
	r.mu.Lock()
	id := req.Header.Get("webhook-id")
	r.byID[id]++
	r.total++
	attempt := r.byID[id]
	if !r.counting {
		r.got = append(r.got, delivery{Header: req.Header.Clone(), Body: body, At: time.Now()})
	}
	r.mu.Unlock()
	sw := &statusWriter{ResponseWriter: w}
	if r.respond != nil {
		r.respond(sw, attempt)
	} else {
		sw.WriteHeader(http.StatusNoContent)
	}
	// The answer leaves when the handler returns, so an acknowledgement
	// is recorded before the sender can see it.
	if readErr == nil && sw.code()/100 == 2 {
		r.mu.Lock()
		r.ackedByID[id]++
		r.mu.Unlock()
	}
}

// statusWriter remembers the status code a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// requests counts the requests received.
func (r *receiver) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// ids is the set of distinct webhook-ids received.
func (r *receiver) ids() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.byID)
}

// acked is the set of distinct webhook-ids the receiver acknowledged (read
// the whole request and answered 2xx), with how often.
func (r *receiver) acked() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.ackedByID)
}

// newTLSReceiver is a receiver served over HTTPS with a certificate of its
// own; caFile is that certificate in PEM, for the dispatcher to trust.
func newTLSReceiver(t *testing.T, respond func(w http.ResponseWriter, attempt int)) (r *receiver, caFile string) {
	t.Helper()
	r = &receiver{byID: map[string]int{}, ackedByID: map[string]int{}, respond: respond}
	r.Server = httptest.NewTLSServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return r, caFile
}
