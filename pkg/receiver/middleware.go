package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultMaxBodyBytes caps request bodies when MiddlewareOptions sets
	// no cap.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxRememberedIDs bounds the webhook-ids Middleware remembers
	// when MiddlewareOptions sets no bound.
	DefaultMaxRememberedIDs = 100_000
	// busyRetryAfter is suggested to the sender when no more IDs can be
	// remembered; by then some will have expired.
	busyRetryAfter = 30 * time.Second
)

// MiddlewareOptions configures Middleware. Only Keys is required.
type MiddlewareOptions struct {
	// Keys supplies the keys deliveries are verified with: a *KeySource,
	// StaticKeys, or any KeyProvider. A provider error answers 503, so the
	// sender retries later.
	Keys KeyProvider
	// Tolerance is how far webhook-timestamp may be from now, in either
	// direction; zero or less means DefaultTolerance. It is also how long
	// a processed webhook-id is remembered.
	Tolerance time.Duration
	// AllowedCIDRs, when not empty, lists the source addresses allowed to
	// deliver; others are answered 403 before anything else is read. The
	// source is the peer address of the connection (IPv4-mapped IPv6
	// addresses are compared as IPv4), unless TrustedProxies says
	// otherwise.
	AllowedCIDRs []netip.Prefix
	// TrustedProxies lists the reverse proxies in front of the receiver.
	// Only when the peer is one of them is X-Forwarded-For read, and the
	// source is then its right-most address that is not itself a trusted
	// proxy: entries further left were written by the client and prove
	// nothing. Empty (the default) means X-Forwarded-For is never read.
	TrustedProxies []netip.Prefix
	// MaxBodyBytes caps the request body; a larger one is answered 413.
	// Zero or less means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxRememberedIDs bounds how many webhook-ids are remembered for
	// duplicate suppression. Zero means DefaultMaxRememberedIDs; a
	// negative value turns duplicate suppression off, for receivers that
	// deduplicate on their own (in a database shared by replicas, say).
	MaxRememberedIDs int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives one line per refused or duplicate delivery; nil
	// means slog.Default(). Key material and header values other than
	// webhook-id are never logged.
	Logger *slog.Logger
}

// Middleware returns a handler that passes verified deliveries on to next
// and answers everything else itself, with a JSON body
// {"error": "<code>", "message": "<text>"}:
//
//   - 403 source_not_allowed: the source address is not in AllowedCIDRs;
//   - 405 method_not_allowed: the method is not POST;
//   - 413 body_too_large: the body exceeds MaxBodyBytes;
//   - 400 unreadable_body, missing_header, invalid_id, invalid_timestamp,
//     invalid_signature_header or invalid_payload: the request is
//     malformed (see Verify and DecodeEvent);
//   - 401 timestamp_too_old, timestamp_too_new or no_matching_signature:
//     the request is not authentic, or no longer fresh;
//   - 503 keys_unavailable or no_keys: the KeyProvider failed or has no
//     key;
//   - 409 in_progress: a delivery with the same webhook-id is being
//     handled right now; the sender retries later and then finds it done
//     (or, had it failed, processes it);
//   - 503 busy (with Retry-After): MaxRememberedIDs IDs are remembered and
//     none has expired yet.
//
// Duplicates are acknowledged, not refused: the Standard Webhooks
// specification makes webhook-id an idempotency key, and a sender that
// retries an event whose acknowledgement it lost must stop retrying. So a
// verified delivery whose webhook-id was already handled successfully
// (next answered 2xx) within the tolerance window is answered 200
// {"status": "duplicate"} without calling next. An ID is remembered until
// the tolerance has passed since the later of its webhook-timestamp and its
// processing, which also outlasts any replay of the captured request. A
// failure of next (not 2xx, or a panic) forgets the ID, so the sender's
// retry is processed. The memory is per process: receivers with several
// replicas should still make their processing idempotent.
//
// next sees the request with the body it can read again and the Event
// available from EventFrom(r.Context()).
//
// Middleware panics if next or opts.Keys is nil or a prefix is invalid,
// which are programming errors.
func Middleware(next http.Handler, opts MiddlewareOptions) http.Handler {
	if next == nil {
		panic("receiver.Middleware: nil next handler")
	}
	if opts.Keys == nil {
		panic("receiver.Middleware: MiddlewareOptions.Keys is nil")
	}
	for _, list := range [][]netip.Prefix{opts.AllowedCIDRs, opts.TrustedProxies} {
		for _, p := range list {
			if !p.IsValid() {
				panic("receiver.Middleware: invalid netip.Prefix in MiddlewareOptions")
			}
		}
	}
	m := &middleware{
		next:     next,
		keys:     opts.Keys,
		verifier: Verifier{Tolerance: opts.Tolerance, Now: opts.Now},
		allowed:  opts.AllowedCIDRs,
		proxies:  opts.TrustedProxies,
		maxBody:  opts.MaxBodyBytes,
		logger:   opts.Logger,
	}
	if m.maxBody <= 0 {
		m.maxBody = DefaultMaxBodyBytes
	}
	if m.logger == nil {
		m.logger = slog.Default()
	}
	switch n := opts.MaxRememberedIDs; {
	case n == 0:
		m.seen = newReplayCache(DefaultMaxRememberedIDs)
	case n > 0:
		m.seen = newReplayCache(n)
	}
	return m
}

type middleware struct {
	next     http.Handler
	keys     KeyProvider
	verifier Verifier
	allowed  []netip.Prefix
	proxies  []netip.Prefix
	maxBody  int64
	logger   *slog.Logger
	seen     *replayCache // nil when duplicate suppression is off
}

// errorBody is the JSON answer to a refused request.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(m.allowed) > 0 {
		src, ok := m.source(r)
		if !ok || !containsAddr(m.allowed, src) {
			m.refuse(w, r, http.StatusForbidden, "source_not_allowed", "source address not allowed", slog.LevelWarn)
			return
		}
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		m.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "webhooks are delivered with POST", slog.LevelInfo)
		return
	}
	tooLarge := "body larger than " + strconv.FormatInt(m.maxBody, 10) + " bytes"
	if r.ContentLength > m.maxBody {
		m.refuse(w, r, http.StatusRequestEntityTooLarge, "body_too_large", tooLarge, slog.LevelInfo)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, m.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			m.refuse(w, r, http.StatusRequestEntityTooLarge, "body_too_large", tooLarge, slog.LevelInfo)
			return
		}
		m.refuse(w, r, http.StatusBadRequest, "unreadable_body", "could not read the body", slog.LevelInfo)
		return
	}

	keys, err := m.keys.Keys()
	if err != nil {
		m.logger.Error("Could not get webhook verification keys", "error", err)
		m.refuse(w, r, http.StatusServiceUnavailable, "keys_unavailable", "verification keys unavailable", slog.LevelInfo)
		return
	}
	sentAt, err := m.verifier.verify(r.Header, body, keys)
	if err != nil {
		status, code, level := verifyFailure(err)
		m.refuse(w, r, status, code, err.Error(), level)
		return
	}
	id := r.Header.Get(HeaderID)
	event, err := DecodeEvent(id, body)
	if err != nil {
		m.refuse(w, r, http.StatusBadRequest, "invalid_payload", err.Error(), slog.LevelWarn)
		return
	}

	if m.seen == nil {
		m.serveNext(w, r, event, body)
		return
	}
	now := m.verifier.now()
	switch m.seen.claim(id, now) {
	case claimDone:
		m.logger.Info("Acknowledged duplicate webhook delivery", "webhookID", id, "type", event.Type)
		writeJSON(w, http.StatusOK, map[string]string{"status": "duplicate", "message": "event already processed"})
		return
	case claimInProgress:
		m.refuse(w, r, http.StatusConflict, "in_progress", "a delivery of this event is being processed", slog.LevelInfo)
		return
	case claimFull:
		w.Header().Set("Retry-After", strconv.Itoa(int(busyRetryAfter/time.Second)))
		m.refuse(w, r, http.StatusServiceUnavailable, "busy", "too many recent events to remember another", slog.LevelWarn)
		return
	}
	// Remembered past the last moment this exact request could pass the
	// timestamp check, and for a full window after processing.
	expires := sentAt
	if now.After(expires) {
		expires = now
	}
	expires = expires.Add(m.verifier.tolerance())
	success := false
	defer func() { m.seen.finish(id, success, expires) }()
	status := m.serveNext(w, r, event, body)
	success = status >= 200 && status < 300
}

// serveNext calls next and returns the status it answered.
func (m *middleware) serveNext(w http.ResponseWriter, r *http.Request, event Event, body []byte) int {
	r = r.WithContext(WithEvent(r.Context(), event))
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rec := &statusRecorder{ResponseWriter: w}
	m.next.ServeHTTP(rec, r)
	if rec.status == 0 {
		// net/http answers 200 for a handler that wrote nothing.
		return http.StatusOK
	}
	return rec.status
}

// verifyFailure maps a Verify error to an answer.
func verifyFailure(err error) (status int, code string, level slog.Level) {
	switch {
	case errors.Is(err, ErrMissingHeader):
		return http.StatusBadRequest, "missing_header", slog.LevelInfo
	case errors.Is(err, ErrInvalidID):
		return http.StatusBadRequest, "invalid_id", slog.LevelInfo
	case errors.Is(err, ErrInvalidTimestamp):
		return http.StatusBadRequest, "invalid_timestamp", slog.LevelInfo
	case errors.Is(err, ErrInvalidSignatureHeader):
		return http.StatusBadRequest, "invalid_signature_header", slog.LevelInfo
	// Authentication failures are worth a warning: a wrong key or a
	// skewed clock on either side shows up here first.
	case errors.Is(err, ErrTooOld):
		return http.StatusUnauthorized, "timestamp_too_old", slog.LevelWarn
	case errors.Is(err, ErrTooNew):
		return http.StatusUnauthorized, "timestamp_too_new", slog.LevelWarn
	case errors.Is(err, ErrNoMatchingSignature):
		return http.StatusUnauthorized, "no_matching_signature", slog.LevelWarn
	case errors.Is(err, ErrNoKeys):
		return http.StatusServiceUnavailable, "no_keys", slog.LevelError
	default:
		return http.StatusInternalServerError, "internal_error", slog.LevelError
	}
}

func (m *middleware) refuse(w http.ResponseWriter, r *http.Request, status int, code, msg string, level slog.Level) {
	attrs := []any{"status", status, "reason", code, "remoteAddr", r.RemoteAddr}
	// The ID is checked before it is logged: it comes from the request,
	// and only a valid one is known to be short and plain.
	if id := r.Header.Get(HeaderID); id != "" && checkID(id) == nil {
		attrs = append(attrs, "webhookID", id)
	}
	attrs = append(attrs, "message", msg)
	m.logger.Log(r.Context(), level, "Refused webhook delivery", attrs...)
	writeJSON(w, status, errorBody{Error: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only strings are marshalled; this cannot happen.
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// source returns the address the request comes from.
func (m *middleware) source(r *http.Request) (netip.Addr, bool) {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok || len(m.proxies) == 0 || !containsAddr(m.proxies, peer) {
		return peer, ok
	}
	// Walk the hops from the nearest: each trusted proxy vouches for the
	// address it appended, and the first untrusted one is the client.
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	src := peer
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		addr, ok := parseAddr(hop)
		if !ok {
			// A garbled hop cannot be vouched for; refuse rather than
			// skip to the client-written part of the list.
			return netip.Addr{}, false
		}
		src = addr
		if !containsAddr(m.proxies, addr) {
			break
		}
	}
	return src, true
}

// parseAddr reads "ip:port", "[ip]:port" or a bare IP, unmapping
// IPv4-mapped IPv6 and dropping any zone, which prefixes never match.
func parseAddr(s string) (netip.Addr, bool) {
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(s); err == nil {
		addr = ap.Addr()
	} else if a, err := netip.ParseAddr(s); err == nil {
		addr = a
	} else {
		return netip.Addr{}, false
	}
	return addr.Unmap().WithZone(""), true
}

func containsAddr(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// statusRecorder notes the status next answers with, to tell whether the
// delivery was processed.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first final status.
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write implies 200 when no status was written.
func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush keeps streaming handlers working behind the middleware.
func (s *statusRecorder) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
