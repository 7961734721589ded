// Package ingest is the producer-facing HTTP API of the dispatcher. Services
// POST events to it, one at a time or in batches, as plain JSON or as
// CloudEvents; it authenticates the producer, validates every event, and
// answers 202 Accepted only after the Publisher has stored the events
// durably. Bad input gets a 4xx JSON error naming the field, and an event is
// either stored whole or not at all.
//
// The same API replays a subscription's dead letters on request (see
// Replayer), for whoever may edit the subscription.
package ingest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/auth"
)

// Event is a validated event ready to be stored.
type Event struct {
	// ID identifies the event within its namespace; publishing the same
	// id twice stores it once.
	ID string
	// Namespace the event was published in.
	Namespace string
	// Type is a valid event type (see package eventtype).
	Type string
	// Time the event happened: the producer's CloudEvents time, else the
	// time it was received. Always UTC.
	Time time.Time
	// Data is the event's payload as compact, valid JSON.
	Data json.RawMessage
}

// PublishResult is the outcome of storing one event.
type PublishResult struct {
	// Duplicate reports that an event with the same namespace and id was
	// already stored; it counts as a success.
	Duplicate bool
	// Err is why this event was not stored; nil on success.
	Err error
}

// Publisher stores events durably.
type Publisher interface {
	// Publish stores events and returns one result per event, in order.
	// An error means nothing can be said about any event; the producer
	// is told to retry all of them.
	Publish(ctx context.Context, events []Event) ([]PublishResult, error)
}

// ErrQueueFull is what a Publisher returns (wrapped) when the store refuses
// new events because it is full. Producers get 503 and retry later.
var ErrQueueFull = errors.New("event queue is full")

// Authorizer checks that a bearer token's user may do what a request asks:
// auth.PublishAttributes for events, auth.ReplayAttributes for a replay. It
// returns an error wrapping auth.ErrUnauthenticated or auth.ErrForbidden for
// a negative decision; any other error is treated as transient.
// *auth.Reviewer implements it.
type Authorizer interface {
	// Review returns nil when token's user is allowed attrs.
	Review(ctx context.Context, token string, attrs auth.Attributes) error
}

// Outcomes passed to Options.Observe.
const (
	// OutcomeAccepted counts events stored for the first time.
	OutcomeAccepted = "accepted"
	// OutcomeDuplicate counts events whose id was already stored.
	OutcomeDuplicate = "duplicate"
	// OutcomeRejected counts events refused as invalid (4xx).
	OutcomeRejected = "rejected"
	// OutcomeFailed counts events the store could not take (503).
	OutcomeFailed = "failed"
)

// Defaults for Options.
const (
	// DefaultMaxBodyBytes is the default limit on a request body.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxBatchEvents is the default limit on events in a batch.
	DefaultMaxBatchEvents = 1000
)

// Options configure the handler. Zero values select the defaults.
type Options struct {
	// MaxBodyBytes limits a request body; DefaultMaxBodyBytes when zero.
	MaxBodyBytes int64
	// MaxBatchEvents limits the events of one batch request;
	// DefaultMaxBatchEvents when zero.
	MaxBatchEvents int
	// Authorizer checks callers' tokens; nil disables authentication.
	Authorizer Authorizer
	// Replayer serves replay requests; nil answers them 404.
	Replayer Replayer
	// Tester serves test deliveries; nil answers them 404.
	Tester Tester
	// Clock stamps events that carry no time; the real clock when nil.
	Clock clock.PassiveClock
	// NewID generates ids for events that carry none; "evt_" followed by
	// a hex UUIDv7 when nil, so generated ids sort by creation time.
	NewID func() string
	// Logger receives the handler's logs; slog.Default() when nil.
	Logger *slog.Logger
	// Observe, when set, is called with the number of events of an
	// authorised request per outcome (OutcomeAccepted, OutcomeDuplicate,
	// OutcomeRejected, OutcomeFailed). A request refused as a whole
	// (malformed body, too large, ...) counts as one rejected event.
	// Requests refused before authorisation succeeds are not observed, so
	// that unauthenticated clients cannot create label values.
	Observe func(namespace string, n int, outcome string)
}

// NewHandler returns the ingest API, which stores events with pub.
func NewHandler(pub Publisher, opts Options) http.Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxBatchEvents <= 0 {
		opts.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.NewID == nil {
		opts.NewID = newID
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Observe == nil {
		opts.Observe = func(string, int, string) {}
	}
	h := &handler{pub: pub, opts: opts}
	mux := http.NewServeMux()
	// Patterns carry no method so that a wrong method gets the JSON 405
	// below instead of the mux's plain-text one.
	mux.HandleFunc("/v1/namespaces/{namespace}/events", h.single)
	mux.HandleFunc("/v1/namespaces/{namespace}/events:batch", h.batch)
	// A wildcard spans a whole segment, so "{name}:replay" is split in
	// the handler.
	mux.HandleFunc("/v1/namespaces/{namespace}/subscriptions/{action}", h.subscriptionAction)
	mux.HandleFunc("/", notFound)
	return mux
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s", echo(r.URL.Path)))
}

func newID() string {
	u := uuid.Must(uuid.NewV7())
	return "evt_" + hex.EncodeToString(u[:])
}

type handler struct {
	pub  Publisher
	opts Options
}

// Content types accepted by the endpoints.
const (
	contentTypeJSON       = "application/json"
	contentTypeCE         = "application/cloudevents+json"
	contentTypeCEBatch    = "application/cloudevents-batch+json"
	acceptedSingleTypes   = contentTypeJSON + ", " + contentTypeCE
	acceptedBatchTypes    = contentTypeJSON + ", " + contentTypeCEBatch
	wwwAuthenticateBearer = `Bearer realm="hookline"`
)

// reasons of the error body, by status code.
var reasons = map[int]string{
	http.StatusBadRequest:            "BadRequest",
	http.StatusUnauthorized:          "Unauthorized",
	http.StatusForbidden:             "Forbidden",
	http.StatusNotFound:              "NotFound",
	http.StatusMethodNotAllowed:      "MethodNotAllowed",
	http.StatusConflict:              "Conflict",
	http.StatusRequestEntityTooLarge: "RequestEntityTooLarge",
	http.StatusUnsupportedMediaType:  "UnsupportedMediaType",
	http.StatusServiceUnavailable:    "ServiceUnavailable",
}

type errorBody struct {
	Status  int    `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type acceptedBody struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

type batchResult struct {
	ID        string `json:"id,omitempty"`
	Index     *int   `json:"index,omitempty"`
	Status    int    `json:"status"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Message   string `json:"message,omitempty"`
}

type batchBody struct {
	Results []batchResult `json:"results"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Messages quote event types and patterns; "<" and ">" read better
	// unescaped, and the body is never embedded in HTML.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only plain structs of strings and ints are encoded here.
		panic(fmt.Sprintf("encoding a response body: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Status: status, Reason: reasons[status], Message: msg})
}

// requestError is a refusal of the whole request.
type requestError struct {
	status  int
	message string
	header  http.Header
}

func (e *requestError) Error() string { return e.message }

func badRequest(err error) *requestError {
	return &requestError{status: http.StatusBadRequest, message: err.Error()}
}

// admit runs the checks common to both endpoints, in an order that reveals
// nothing to unauthenticated callers and reads no body before the caller is
// known: method, namespace, credentials, content type, size. It returns
// the namespace, the media type and the body.
func (h *handler) admit(w http.ResponseWriter, r *http.Request, accepted []string) (ns, mediaType string, body []byte, ok bool) {
	if !allowPost(w, r) {
		return "", "", nil, false
	}
	ns, ok = pathNamespace(w, r)
	if !ok {
		return "", "", nil, false
	}
	forbidden := fmt.Sprintf("not allowed to publish events in namespace %q: create on webhookevents.hookline.dev is required", ns)
	if rerr := h.authorize(r, auth.PublishAttributes(ns), forbidden); rerr != nil {
		writeRequestError(w, rerr)
		return "", "", nil, false
	}
	// From here on the caller is authorised, so refusals are observed.
	refuse := func(rerr *requestError) {
		h.opts.Observe(ns, 1, OutcomeRejected)
		writeError(w, rerr.status, rerr.message)
	}
	mediaType, rerr := checkContentType(r.Header.Get("Content-Type"), accepted)
	if rerr != nil {
		refuse(rerr)
		return "", "", nil, false
	}
	body, rerr = h.readBody(w, r)
	if rerr != nil {
		refuse(rerr)
		return "", "", nil, false
	}
	return ns, mediaType, body, true
}

// allowPost answers 405 to any method but POST.
func allowPost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed, use POST", echo(r.Method)))
	return false
}

// pathNamespace returns the request's namespace, or answers 400.
func pathNamespace(w http.ResponseWriter, r *http.Request) (string, bool) {
	ns := r.PathValue("namespace")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("namespace: %s is not a valid namespace name: %s", echo(ns), strings.Join(errs, "; ")))
		return "", false
	}
	return ns, true
}

func writeRequestError(w http.ResponseWriter, rerr *requestError) {
	for k, v := range rerr.header {
		w.Header()[k] = v
	}
	writeError(w, rerr.status, rerr.message)
}

// authorize checks the bearer token, if authentication is enabled; forbidden
// is the message of a 403.
func (h *handler) authorize(r *http.Request, attrs auth.Attributes, forbidden string) *requestError {
	if h.opts.Authorizer == nil {
		return nil
	}
	challenge := http.Header{"Www-Authenticate": {wwwAuthenticateBearer}}
	token, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		return &requestError{
			status:  http.StatusUnauthorized,
			message: "a bearer token is required: send \"Authorization: Bearer <token>\" with a ServiceAccount token for audience hookline",
			header:  challenge,
		}
	}
	err := h.opts.Authorizer.Review(r.Context(), token, attrs)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, auth.ErrUnauthenticated):
		return &requestError{status: http.StatusUnauthorized, message: "the bearer token is not valid for audience hookline", header: challenge}
	case errors.Is(err, auth.ErrForbidden):
		return &requestError{status: http.StatusForbidden, message: forbidden}
	default:
		h.opts.Logger.ErrorContext(r.Context(), "Authorizing a request failed", "namespace", attrs.Namespace, "resource", attrs.Resource, "error", err)
		return &requestError{status: http.StatusServiceUnavailable, message: "cannot authorize the request now, retry later"}
	}
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header value. The scheme is case-insensitive (RFC 9110).
func bearerToken(v string) (string, bool) {
	scheme, token, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// checkContentType returns the media type of a Content-Type header if it is
// one of accepted.
func checkContentType(v string, accepted []string) (string, *requestError) {
	list := strings.Join(accepted, ", ")
	if v == "" {
		return "", &requestError{status: http.StatusUnsupportedMediaType, message: "Content-Type is required; accepted: " + list}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		for _, a := range accepted {
			if mt != a {
				continue
			}
			if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
				return "", &requestError{status: http.StatusUnsupportedMediaType,
					message: fmt.Sprintf("charset %s is not supported, only utf-8 is", echo(cs))}
			}
			return mt, nil
		}
	}
	return "", &requestError{status: http.StatusUnsupportedMediaType,
		message: fmt.Sprintf("Content-Type %s is not supported; accepted: %s", echo(v), list)}
}

// readBody reads the whole body, up to MaxBodyBytes.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *requestError) {
	limit := h.opts.MaxBodyBytes
	tooLarge := &requestError{status: http.StatusRequestEntityTooLarge,
		message: fmt.Sprintf("request body is larger than the limit of %d bytes", limit)}
	// Refusing on the declared length spares reading a body that will be
	// refused anyway.
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge
		}
		return nil, &requestError{status: http.StatusBadRequest, message: fmt.Sprintf("reading the request body: %v", err)}
	}
	return body, nil
}

func (h *handler) single(w http.ResponseWriter, r *http.Request) {
	ns, mediaType, body, ok := h.admit(w, r, []string{contentTypeJSON, contentTypeCE})
	if !ok {
		return
	}
	var d draft
	var err error
	switch {
	case mediaType == contentTypeCE:
		d, err = decodeStructured(body, "")
	case len(r.Header.Values("Ce-Specversion")) > 0:
		d, err = decodeBinary(r.Header, body)
	default:
		d, err = decodeNative(body, "")
	}
	if err != nil {
		h.opts.Observe(ns, 1, OutcomeRejected)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ev := h.complete(ns, d, h.opts.Clock.Now().UTC())
	results, err := h.publish(r.Context(), []Event{ev})
	if err != nil {
		h.opts.Observe(ns, 1, OutcomeFailed)
		writeError(w, http.StatusServiceUnavailable, unavailableMessage(err))
		return
	}
	res := results[0]
	switch {
	case res.Err != nil:
		h.logPublishError(r.Context(), ns, 1, res.Err)
		h.opts.Observe(ns, 1, OutcomeFailed)
		writeError(w, http.StatusServiceUnavailable, unavailableMessage(res.Err))
	case res.Duplicate:
		h.opts.Observe(ns, 1, OutcomeDuplicate)
		writeJSON(w, http.StatusAccepted, acceptedBody{ID: ev.ID, Duplicate: true})
	default:
		h.opts.Observe(ns, 1, OutcomeAccepted)
		writeJSON(w, http.StatusAccepted, acceptedBody{ID: ev.ID})
	}
}

func (h *handler) batch(w http.ResponseWriter, r *http.Request) {
	ns, mediaType, body, ok := h.admit(w, r, []string{contentTypeJSON, contentTypeCEBatch})
	if !ok {
		return
	}
	var items []item
	var err error
	if mediaType == contentTypeCEBatch {
		items, err = decodeStructuredBatch(body, h.opts.MaxBatchEvents)
	} else {
		items, err = decodeNativeBatch(body, h.opts.MaxBatchEvents)
	}
	if err != nil {
		h.opts.Observe(ns, 1, OutcomeRejected)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}

	now := h.opts.Clock.Now().UTC()
	results := make([]batchResult, len(items))
	var events []Event
	var positions []int // positions[i] is the request index of events[i]
	rejected := 0
	for i, it := range items {
		if it.err != nil {
			results[i] = batchResult{Index: &i, Status: http.StatusBadRequest, Message: it.err.Error()}
			rejected++
			continue
		}
		events = append(events, h.complete(ns, it.draft, now))
		positions = append(positions, i)
	}
	if rejected > 0 {
		h.opts.Observe(ns, rejected, OutcomeRejected)
	}

	// Valid events are stored in one call so that the Publisher can store
	// them as one atomic batch.
	allOK := rejected == 0
	if len(events) > 0 {
		pubResults, err := h.publish(r.Context(), events)
		if err != nil {
			h.opts.Observe(ns, len(events), OutcomeFailed)
			writeError(w, http.StatusServiceUnavailable, unavailableMessage(err))
			return
		}
		counts := map[string]int{}
		for j, res := range pubResults {
			i := positions[j]
			switch {
			case res.Err != nil:
				h.logPublishError(r.Context(), ns, 1, res.Err)
				results[i] = batchResult{Index: &i, Status: http.StatusServiceUnavailable, Message: unavailableMessage(res.Err)}
				counts[OutcomeFailed]++
				allOK = false
			case res.Duplicate:
				results[i] = batchResult{ID: events[j].ID, Status: http.StatusAccepted, Duplicate: true}
				counts[OutcomeDuplicate]++
			default:
				results[i] = batchResult{ID: events[j].ID, Status: http.StatusAccepted}
				counts[OutcomeAccepted]++
			}
		}
		for outcome, n := range counts {
			h.opts.Observe(ns, n, outcome)
		}
	}
	status := http.StatusAccepted
	if !allOK {
		status = http.StatusMultiStatus
	}
	writeJSON(w, status, batchBody{Results: results})
}

// complete turns a draft into an event, filling what the producer left out.
func (h *handler) complete(ns string, d draft, now time.Time) Event {
	ev := Event{ID: d.ID, Namespace: ns, Type: d.Type, Time: d.Time, Data: d.Data}
	if ev.ID == "" {
		ev.ID = h.opts.NewID()
	}
	if ev.Time.IsZero() {
		ev.Time = now
	}
	return ev
}

// publish calls the Publisher and checks that it kept its contract, so that
// a faulty adapter cannot make the handler claim success for an event that
// was never answered for.
func (h *handler) publish(ctx context.Context, events []Event) ([]PublishResult, error) {
	results, err := h.pub.Publish(ctx, events)
	if err == nil && len(results) != len(events) {
		err = fmt.Errorf("publisher returned %d results for %d events", len(results), len(events))
	}
	if err != nil {
		h.logPublishError(ctx, events[0].Namespace, len(events), err)
		return nil, err
	}
	return results, nil
}

func (h *handler) logPublishError(ctx context.Context, ns string, n int, err error) {
	if errors.Is(err, ErrQueueFull) {
		h.opts.Logger.WarnContext(ctx, "Event queue is full, refusing events", "namespace", ns, "events", n)
		return
	}
	h.opts.Logger.ErrorContext(ctx, "Storing events failed", "namespace", ns, "events", n, "error", err)
}

// unavailableMessage explains a storage failure without internal details,
// which stay in the logs.
func unavailableMessage(err error) string {
	if errors.Is(err, ErrQueueFull) {
		return "the event queue is full, retry later"
	}
	return "the event could not be stored, retry later"
}
