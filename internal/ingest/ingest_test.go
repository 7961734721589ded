package ingest_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/hookline/hookline/internal/auth"
	"github.com/hookline/hookline/internal/ingest"
)

var now = time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)

// fakePublisher stores events in memory. An event whose namespace and id
// were stored before is reported as a duplicate, as the queue does.
type fakePublisher struct {
	mu     sync.Mutex
	stored []ingest.Event
	seen   map[string]bool
	calls  int
	// err fails the whole call; resultErr fails the events whose id it
	// names.
	err       error
	resultErr map[string]error
	// short makes the publisher break its contract by answering for one
	// event fewer than it was given.
	short bool
}

func (p *fakePublisher) Publish(_ context.Context, events []ingest.Event) ([]ingest.PublishResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.err != nil {
		return nil, p.err
	}
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	results := make([]ingest.PublishResult, len(events))
	for i, ev := range events {
		if err := p.resultErr[ev.ID]; err != nil {
			results[i].Err = err
			continue
		}
		key := ev.Namespace + "/" + ev.ID
		if p.seen[key] {
			results[i].Duplicate = true
			continue
		}
		p.seen[key] = true
		p.stored = append(p.stored, ev)
	}
	if p.short {
		results = results[1:]
	}
	return results, nil
}

func (p *fakePublisher) events() []ingest.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ingest.Event(nil), p.stored...)
}

func (p *fakePublisher) callCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// sequentialIDs returns an id generator yielding gen-1, gen-2, ...
func sequentialIDs() func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("gen-%d", n)
	}
}

func newHandler(pub ingest.Publisher, mutate ...func(*ingest.Options)) http.Handler {
	opts := ingest.Options{
		Clock:  clocktesting.NewFakePassiveClock(now),
		NewID:  sequentialIDs(),
		Logger: slog.New(slog.DiscardHandler),
	}
	for _, m := range mutate {
		m(&opts)
	}
	return ingest.NewHandler(pub, opts)
}

type request struct {
	method      string // POST when empty
	path        string
	contentType string
	header      map[string]string
	body        string
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(h http.Handler, req request) response {
	method := req.method
	if method == "" {
		method = http.MethodPost
	}
	r := httptest.NewRequest(method, req.path, strings.NewReader(req.body))
	if req.contentType != "" {
		r.Header.Set("Content-Type", req.contentType)
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return response{status: w.Code, header: w.Header(), body: w.Body.String()}
}

// jsonEqual compares JSON documents regardless of formatting.
func jsonEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("response body %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

func errorJSON(status int, reason, message string) string {
	b, err := json.Marshal(map[string]any{"status": status, "reason": reason, "message": message})
	if err != nil {
		panic(err)
	}
	return string(b)
}

const (
	eventsPath = "/v1/namespaces/team-a/events"
	batchPath  = "/v1/namespaces/team-a/events:batch"
	ceBase     = `"specversion":"1.0","source":"/billing","type":"invoice.paid"`
)

func ev(id, typ, data string, at time.Time) ingest.Event {
	return ingest.Event{ID: id, Namespace: "team-a", Type: typ, Time: at, Data: json.RawMessage(data)}
}

func TestSingleEvent(t *testing.T) {
	ceTime := time.Date(2024, 5, 6, 5, 8, 9, 500000000, time.UTC)
	tests := []struct {
		name      string
		req       request
		setup     func(*fakePublisher)
		status    int
		body      string
		stored    []ingest.Event
		noPublish bool
	}{
		{
			name:   "native with generated id",
			req:    request{contentType: "application/json", body: `{"type":"invoice.paid","data":{ "amount" : 12.5 }}`},
			status: 202, body: `{"id":"gen-1"}`,
			stored: []ingest.Event{ev("gen-1", "invoice.paid", `{"amount":12.5}`, now)},
		},
		{
			name:   "native with id and charset",
			req:    request{contentType: "application/json; charset=utf-8", body: `{"id":"inv-1","type":"invoice.paid","data":[1]}`},
			status: 202, body: `{"id":"inv-1"}`,
			stored: []ingest.Event{ev("inv-1", "invoice.paid", `[1]`, now)},
		},
		{
			name:   "native without data stores null",
			req:    request{contentType: "application/json", body: `{"type":"ping"}`},
			status: 202, body: `{"id":"gen-1"}`,
			stored: []ingest.Event{ev("gen-1", "ping", `null`, now)},
		},
		{
			name:   "duplicate id",
			req:    request{contentType: "application/json", body: `{"id":"inv-1","type":"invoice.paid"}`},
			setup:  func(p *fakePublisher) { p.seen = map[string]bool{"team-a/inv-1": true} },
			status: 202, body: `{"id":"inv-1","duplicate":true}`,
		},
		{
			name:   "same id in another namespace is not a duplicate",
			req:    request{contentType: "application/json", body: `{"id":"inv-1","type":"invoice.paid"}`},
			setup:  func(p *fakePublisher) { p.seen = map[string]bool{"team-b/inv-1": true} },
			status: 202, body: `{"id":"inv-1"}`,
			stored: []ingest.Event{ev("inv-1", "invoice.paid", `null`, now)},
		},
		{
			name:   "cloudevent structured",
			req:    request{contentType: "application/cloudevents+json", body: `{` + ceBase + `,"id":"ce-1","time":"2024-05-06T07:08:09.5+02:00","datacontenttype":"application/json","traceparent":"00-1","data":{"a":"b"}}`},
			status: 202, body: `{"id":"ce-1"}`,
			stored: []ingest.Event{ev("ce-1", "invoice.paid", `{"a":"b"}`, ceTime)},
		},
		{
			name:   "cloudevent structured without time",
			req:    request{contentType: "application/cloudevents+json; charset=utf-8", body: `{` + ceBase + `,"id":"ce-2"}`},
			status: 202, body: `{"id":"ce-2"}`,
			stored: []ingest.Event{ev("ce-2", "invoice.paid", `null`, now)},
		},
		{
			name: "cloudevent binary",
			req: request{contentType: "application/json", body: `{"a": 1}`, header: map[string]string{
				"ce-specversion": "1.0", "ce-id": "bin-1", "ce-source": "/billing", "ce-type": "invoice.paid", "ce-time": "2024-05-06T05:08:09.5Z",
			}},
			status: 202, body: `{"id":"bin-1"}`,
			stored: []ingest.Event{ev("bin-1", "invoice.paid", `{"a":1}`, ceTime)},
		},
		{
			name: "binary mode is chosen by ce-specversion even if the body looks native",
			req: request{contentType: "application/json", body: `{"type":"other"}`, header: map[string]string{
				"ce-specversion": "1.0", "ce-id": "bin-2", "ce-source": "/billing", "ce-type": "invoice.paid",
			}},
			status: 202, body: `{"id":"bin-2"}`,
			stored: []ingest.Event{ev("bin-2", "invoice.paid", `{"type":"other"}`, now)},
		},
		{
			name: "binary mode missing type",
			req: request{contentType: "application/json", body: `{}`, header: map[string]string{
				"ce-specversion": "1.0", "ce-id": "bin-1", "ce-source": "/billing",
			}},
			status: 400, body: errorJSON(400, "BadRequest", "ce-type: required"), noPublish: true,
		},
		{
			name:   "unknown field",
			req:    request{contentType: "application/json", body: `{"type":"a","payload":{}}`},
			status: 400, body: errorJSON(400, "BadRequest", `unknown field "payload", accepted fields are id, type and data`), noPublish: true,
		},
		{
			name:   "missing type",
			req:    request{contentType: "application/json", body: `{"data":{}}`},
			status: 400, body: errorJSON(400, "BadRequest", "type: required"), noPublish: true,
		},
		{
			name:   "invalid type",
			req:    request{contentType: "application/json", body: `{"type":"a..b"}`},
			status: 400, body: errorJSON(400, "BadRequest", `type: "a..b" is not a valid event type: empty segment at position 2`), noPublish: true,
		},
		{
			name:   "invalid id",
			req:    request{contentType: "application/json", body: `{"id":"a/b","type":"a"}`},
			status: 400, body: errorJSON(400, "BadRequest", `id: "a/b": invalid character '/' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -`), noPublish: true,
		},
		{
			name:   "malformed JSON",
			req:    request{contentType: "application/json", body: `{"type":"a",}`},
			status: 400, body: errorJSON(400, "BadRequest", "malformed JSON at byte 13: invalid character '}' looking for beginning of object key string"), noPublish: true,
		},
		{
			name:   "cloudevent with base64 data",
			req:    request{contentType: "application/cloudevents+json", body: `{` + ceBase + `,"id":"1","data_base64":"AAE="}`},
			status: 400, body: errorJSON(400, "BadRequest", `data_base64: not supported, only JSON data is; send the payload as "data" with a JSON datacontenttype`), noPublish: true,
		},
		{
			name:   "cloudevent without id",
			req:    request{contentType: "application/cloudevents+json", body: `{` + ceBase + `}`},
			status: 400, body: errorJSON(400, "BadRequest", "id: required"), noPublish: true,
		},
		{
			name:   "cloudevent with XML data",
			req:    request{contentType: "application/cloudevents+json", body: `{` + ceBase + `,"id":"1","datacontenttype":"application/xml","data":"<a/>"}`},
			status: 400, body: errorJSON(400, "BadRequest", `datacontenttype: "application/xml" is not supported, only JSON data (application/json or */*+json) is`), noPublish: true,
		},
		{
			name:   "unsupported content type",
			req:    request{contentType: "text/plain", body: `{"type":"a"}`},
			status: 415, body: errorJSON(415, "UnsupportedMediaType", `Content-Type "text/plain" is not supported; accepted: application/json, application/cloudevents+json`), noPublish: true,
		},
		{
			name:   "missing content type",
			req:    request{body: `{"type":"a"}`},
			status: 415, body: errorJSON(415, "UnsupportedMediaType", "Content-Type is required; accepted: application/json, application/cloudevents+json"), noPublish: true,
		},
		{
			name:   "batch content type on the single endpoint",
			req:    request{contentType: "application/cloudevents-batch+json", body: `[]`},
			status: 415, body: errorJSON(415, "UnsupportedMediaType", `Content-Type "application/cloudevents-batch+json" is not supported; accepted: application/json, application/cloudevents+json`), noPublish: true,
		},
		{
			name:   "non UTF-8 charset",
			req:    request{contentType: "application/json; charset=latin1", body: `{"type":"a"}`},
			status: 415, body: errorJSON(415, "UnsupportedMediaType", `charset "latin1" is not supported, only utf-8 is`), noPublish: true,
		},
		{
			name:   "invalid namespace",
			req:    request{path: "/v1/namespaces/Team_A/events", contentType: "application/json", body: `{"type":"a"}`},
			status: 400, body: errorJSON(400, "BadRequest", `namespace: "Team_A" is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`), noPublish: true,
		},
		{
			name:   "queue full",
			req:    request{contentType: "application/json", body: `{"type":"a"}`},
			setup:  func(p *fakePublisher) { p.err = fmt.Errorf("publishing: %w", ingest.ErrQueueFull) },
			status: 503, body: errorJSON(503, "ServiceUnavailable", "the event queue is full, retry later"),
		},
		{
			name:   "store failure",
			req:    request{contentType: "application/json", body: `{"type":"a"}`},
			setup:  func(p *fakePublisher) { p.err = errors.New("nats: timeout") },
			status: 503, body: errorJSON(503, "ServiceUnavailable", "the event could not be stored, retry later"),
		},
		{
			name:   "event failure",
			req:    request{contentType: "application/json", body: `{"id":"x","type":"a"}`},
			setup:  func(p *fakePublisher) { p.resultErr = map[string]error{"x": ingest.ErrQueueFull} },
			status: 503, body: errorJSON(503, "ServiceUnavailable", "the event queue is full, retry later"),
		},
		{
			name:   "publisher answering for too few events",
			req:    request{contentType: "application/json", body: `{"id":"x","type":"a"}`},
			setup:  func(p *fakePublisher) { p.short = true },
			status: 503, body: errorJSON(503, "ServiceUnavailable", "the event could not be stored, retry later"),
			// The fake kept the event, but the handler must not claim so.
			stored: []ingest.Event{ev("x", "a", `null`, now)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePublisher{}
			if tt.setup != nil {
				tt.setup(pub)
			}
			if tt.req.path == "" {
				tt.req.path = eventsPath
			}
			resp := do(newHandler(pub), tt.req)
			if resp.status != tt.status {
				t.Errorf("status = %d, want %d (body %s)", resp.status, tt.status, resp.body)
			}
			if ct := resp.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			jsonEqual(t, resp.body, tt.body)
			if diff := cmp.Diff(tt.stored, pub.events()); diff != "" {
				t.Errorf("stored events (-want +got):\n%s", diff)
			}
			if tt.noPublish && pub.callCount() != 0 {
				t.Errorf("Publish called %d times, want 0", pub.callCount())
			}
		})
	}
}

func TestBatch(t *testing.T) {
	ceTime := time.Date(2024, 5, 6, 5, 8, 9, 0, time.UTC)
	tests := []struct {
		name   string
		req    request
		setup  func(*fakePublisher)
		status int
		body   string
		stored []ingest.Event
		calls  int
	}{
		{
			name: "all valid",
			req: request{contentType: "application/json", body: `{"events":[
				{"type":"a.one","data":1},
				{"id":"mine","type":"a.two","data":{"k": "v"}},
				{"type":"a.three"}]}`},
			status: 202, body: `{"results":[{"id":"gen-1","status":202},{"id":"mine","status":202},{"id":"gen-2","status":202}]}`,
			stored: []ingest.Event{ev("gen-1", "a.one", `1`, now), ev("mine", "a.two", `{"k":"v"}`, now), ev("gen-2", "a.three", `null`, now)},
			calls:  1,
		},
		{
			name: "mixed valid and invalid",
			req: request{contentType: "application/json", body: `{"events":[
				{"type":"a.one"},
				{"data":1},
				{"id":"ok-2","type":"a.two"},
				{"type":"a","extra":true},
				"nope",
				{"id":"a b","type":"a"}]}`},
			status: 207, body: `{"results":[
				{"id":"gen-1","status":202},
				{"index":1,"status":400,"message":"events[1].type: required"},
				{"id":"ok-2","status":202},
				{"index":3,"status":400,"message":"events[3]: unknown field \"extra\", accepted fields are id, type and data"},
				{"index":4,"status":400,"message":"events[4] must be a JSON object, found a string"},
				{"index":5,"status":400,"message":"events[5].id: \"a b\": invalid character ' ' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -"}]}`,
			stored: []ingest.Event{ev("gen-1", "a.one", `null`, now), ev("ok-2", "a.two", `null`, now)},
			calls:  1,
		},
		{
			name:   "all invalid publishes nothing",
			req:    request{contentType: "application/json", body: `{"events":[{"type":"a..b"},{"type":"*"}]}`},
			status: 207, body: `{"results":[
				{"index":0,"status":400,"message":"events[0].type: \"a..b\" is not a valid event type: empty segment at position 2"},
				{"index":1,"status":400,"message":"events[1].type: \"*\" is not a valid event type: wildcard \"*\" in segment 1 is only allowed in patterns"}]}`,
		},
		{
			name:   "duplicates are accepted",
			req:    request{contentType: "application/json", body: `{"events":[{"id":"d1","type":"a"},{"id":"n1","type":"a"}]}`},
			setup:  func(p *fakePublisher) { p.seen = map[string]bool{"team-a/d1": true} },
			status: 202, body: `{"results":[{"id":"d1","status":202,"duplicate":true},{"id":"n1","status":202}]}`,
			stored: []ingest.Event{ev("n1", "a", `null`, now)},
			calls:  1,
		},
		{
			name:   "one event not stored",
			req:    request{contentType: "application/json", body: `{"events":[{"id":"e1","type":"a"},{"id":"e2","type":"a"}]}`},
			setup:  func(p *fakePublisher) { p.resultErr = map[string]error{"e2": errors.New("boom")} },
			status: 207, body: `{"results":[{"id":"e1","status":202},{"index":1,"status":503,"message":"the event could not be stored, retry later"}]}`,
			stored: []ingest.Event{ev("e1", "a", `null`, now)},
			calls:  1,
		},
		{
			name:   "store failure fails all",
			req:    request{contentType: "application/json", body: `{"events":[{"type":"a"},{"type":"b"}]}`},
			setup:  func(p *fakePublisher) { p.err = fmt.Errorf("stream: %w", ingest.ErrQueueFull) },
			status: 503, body: errorJSON(503, "ServiceUnavailable", "the event queue is full, retry later"),
			calls: 1,
		},
		{
			name:   "empty list",
			req:    request{contentType: "application/json", body: `{"events":[]}`},
			status: 400, body: errorJSON(400, "BadRequest", "events: must hold at least one event"),
		},
		{
			name:   "too many events",
			req:    request{contentType: "application/json", body: `{"events":[` + strings.Repeat(`{"type":"a"},`, 6) + `{"type":"a"}]}`},
			status: 400, body: errorJSON(400, "BadRequest", "events: holds 7 events, maximum is 6"),
		},
		{
			name:   "missing events",
			req:    request{contentType: "application/json", body: `{}`},
			status: 400, body: errorJSON(400, "BadRequest", "events: required"),
		},
		{
			name:   "events not an array",
			req:    request{contentType: "application/json", body: `{"events":{"type":"a"}}`},
			status: 400, body: errorJSON(400, "BadRequest", "events must be a JSON array, found an object"),
		},
		{
			name:   "single event sent to the batch endpoint",
			req:    request{contentType: "application/json", body: `{"type":"a"}`},
			status: 400, body: errorJSON(400, "BadRequest", `unknown field "type", the only accepted field is events`),
		},
		{
			name:   "malformed",
			req:    request{contentType: "application/json", body: `{"events":[{"type":"a"}`},
			status: 400, body: errorJSON(400, "BadRequest", "malformed JSON at byte 23: unexpected end of JSON input"),
		},
		{
			name: "cloudevents batch",
			req: request{contentType: "application/cloudevents-batch+json", body: `[
				{` + ceBase + `,"id":"c1","time":"2024-05-06T05:08:09Z","data":{"n":1}},
				{` + ceBase + `,"id":"c2"}]`},
			status: 202, body: `{"results":[{"id":"c1","status":202},{"id":"c2","status":202}]}`,
			stored: []ingest.Event{ev("c1", "invoice.paid", `{"n":1}`, ceTime), ev("c2", "invoice.paid", `null`, now)},
			calls:  1,
		},
		{
			name: "cloudevents batch with an invalid event",
			req: request{contentType: "application/cloudevents-batch+json", body: `[
				{"specversion":"1.0","id":"c1","type":"a"},
				{` + ceBase + `,"id":"c2"}]`},
			status: 207, body: `{"results":[{"index":0,"status":400,"message":"[0].source: required"},{"id":"c2","status":202}]}`,
			stored: []ingest.Event{ev("c2", "invoice.paid", `null`, now)},
			calls:  1,
		},
		{
			name:   "cloudevents batch not an array",
			req:    request{contentType: "application/cloudevents-batch+json", body: `{"events":[]}`},
			status: 400, body: errorJSON(400, "BadRequest", "body must be a JSON array, found an object"),
		},
		{
			name:   "structured cloudevent content type on the batch endpoint",
			req:    request{contentType: "application/cloudevents+json", body: `{}`},
			status: 415, body: errorJSON(415, "UnsupportedMediaType", `Content-Type "application/cloudevents+json" is not supported; accepted: application/json, application/cloudevents-batch+json`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePublisher{}
			if tt.setup != nil {
				tt.setup(pub)
			}
			tt.req.path = batchPath
			resp := do(newHandler(pub, func(o *ingest.Options) { o.MaxBatchEvents = 6 }), tt.req)
			if resp.status != tt.status {
				t.Errorf("status = %d, want %d (body %s)", resp.status, tt.status, resp.body)
			}
			jsonEqual(t, resp.body, tt.body)
			if diff := cmp.Diff(tt.stored, pub.events()); diff != "" {
				t.Errorf("stored events (-want +got):\n%s", diff)
			}
			if pub.callCount() != tt.calls {
				t.Errorf("Publish called %d times, want %d", pub.callCount(), tt.calls)
			}
		})
	}
}

func TestDefaultBatchLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range 1001 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"type":"a"}`)
	}
	b.WriteString(`]}`)
	pub := &fakePublisher{}
	resp := do(newHandler(pub), request{path: batchPath, contentType: "application/json", body: b.String()})
	if resp.status != 400 {
		t.Fatalf("status = %d, want 400", resp.status)
	}
	jsonEqual(t, resp.body, errorJSON(400, "BadRequest", "events: holds 1001 events, maximum is 1000"))
}

// bodyProbe records whether the handler read the request body.
type bodyProbe struct {
	r    io.Reader
	read bool
}

func (b *bodyProbe) Read(p []byte) (int, error) {
	b.read = true
	return b.r.Read(p)
}

// fakeAuthorizer allows token "good" to publish in namespace team-a and
// token "editor" to update (replay) subscriptions there, and answers as an
// auth.Reviewer would otherwise. It records publish checks as
// "token@namespace", others as "token@attributes".
type fakeAuthorizer struct {
	mu    sync.Mutex
	calls []string
}

func (a *fakeAuthorizer) Review(_ context.Context, token string, attrs auth.Attributes) error {
	publish := attrs == auth.PublishAttributes(attrs.Namespace)
	call := token + "@" + attrs.Namespace
	if !publish {
		call = token + "@" + attrs.String()
	}
	a.mu.Lock()
	a.calls = append(a.calls, call)
	a.mu.Unlock()
	switch {
	case token == "broken":
		return errors.New("reviewing the bearer token: connection refused")
	case token != "good" && token != "editor":
		return fmt.Errorf("checking the bearer token: %w", auth.ErrUnauthenticated)
	case attrs.Namespace != "team-a":
		return fmt.Errorf("user may not %s: %w", attrs, auth.ErrForbidden)
	case token == "good" && publish:
		return nil
	case token == "editor" && attrs == auth.ReplayAttributes("team-a", attrs.Name):
		return nil
	}
	return fmt.Errorf("user may not %s: %w", attrs, auth.ErrForbidden)
}

func TestAuthentication(t *testing.T) {
	challenge := `Bearer realm="hookline"`
	tests := []struct {
		name        string
		path        string
		auth        string // Authorization header; none when empty
		contentType string
		body        string
		status      int
		body2       string // expected response body
		challenge   bool
		calls       []string
	}{
		{name: "no header", auth: "", status: 401, challenge: true,
			body2: errorJSON(401, "Unauthorized", `a bearer token is required: send "Authorization: Bearer <token>" with a ServiceAccount token for audience hookline`)},
		{name: "basic scheme", auth: "Basic Z29vZDp4", status: 401, challenge: true,
			body2: errorJSON(401, "Unauthorized", `a bearer token is required: send "Authorization: Bearer <token>" with a ServiceAccount token for audience hookline`)},
		{name: "empty bearer", auth: "Bearer ", status: 401, challenge: true,
			body2: errorJSON(401, "Unauthorized", `a bearer token is required: send "Authorization: Bearer <token>" with a ServiceAccount token for audience hookline`)},
		{name: "rejected token", auth: "Bearer s3cr3t-but-wrong", status: 401, challenge: true, calls: []string{"s3cr3t-but-wrong@team-a"},
			body2: errorJSON(401, "Unauthorized", "the bearer token is not valid for audience hookline")},
		{name: "forbidden namespace", path: "/v1/namespaces/team-b/events", auth: "Bearer good", status: 403, calls: []string{"good@team-b"},
			body2: errorJSON(403, "Forbidden", `not allowed to publish events in namespace "team-b": create on webhookevents.hookline.dev is required`)},
		{name: "authorizer unavailable", auth: "Bearer broken", status: 503, calls: []string{"broken@team-a"},
			body2: errorJSON(503, "ServiceUnavailable", "cannot authorize the request now, retry later")},
		{name: "auth before content type", auth: "Bearer nope", contentType: "text/plain", status: 401, challenge: true, calls: []string{"nope@team-a"},
			body2: errorJSON(401, "Unauthorized", "the bearer token is not valid for audience hookline")},
		{name: "auth before body validation", auth: "Bearer nope", body: `{"type":`, status: 401, challenge: true, calls: []string{"nope@team-a"},
			body2: errorJSON(401, "Unauthorized", "the bearer token is not valid for audience hookline")},
		{name: "accepted", auth: "Bearer good", status: 202, calls: []string{"good@team-a"}, body2: `{"id":"gen-1"}`},
		{name: "scheme is case-insensitive", auth: "bearer good", status: 202, calls: []string{"good@team-a"}, body2: `{"id":"gen-1"}`},
		{name: "batch endpoint is protected", path: batchPath, auth: "Bearer nope", status: 401, challenge: true, calls: []string{"nope@team-a"},
			body2: errorJSON(401, "Unauthorized", "the bearer token is not valid for audience hookline")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePublisher{}
			az := &fakeAuthorizer{}
			h := newHandler(pub, func(o *ingest.Options) { o.Authorizer = az })
			path := tt.path
			if path == "" {
				path = eventsPath
			}
			body := tt.body
			if body == "" {
				body = `{"type":"a"}`
			}
			probe := &bodyProbe{r: strings.NewReader(body)}
			r := httptest.NewRequest(http.MethodPost, path, probe)
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			r.Header.Set("Content-Type", ct)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)

			if w.Code != tt.status {
				t.Errorf("status = %d, want %d (body %s)", w.Code, tt.status, w.Body)
			}
			jsonEqual(t, w.Body.String(), tt.body2)
			gotChallenge := w.Header().Get("WWW-Authenticate")
			if tt.challenge && gotChallenge != challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", gotChallenge, challenge)
			}
			if !tt.challenge && gotChallenge != "" {
				t.Errorf("WWW-Authenticate = %q, want none", gotChallenge)
			}
			if diff := cmp.Diff(tt.calls, az.calls); diff != "" {
				t.Errorf("Authorize calls (-want +got):\n%s", diff)
			}
			if tt.status != 202 {
				if probe.read {
					t.Error("the body was read although the request was refused by authentication")
				}
				if pub.callCount() != 0 {
					t.Errorf("Publish called %d times", pub.callCount())
				}
			}
			if tok, ok := strings.CutPrefix(tt.auth, "Bearer "); ok && tok != "" && tt.status != 202 && strings.Contains(w.Body.String(), tok) {
				t.Errorf("response %s echoes the token", w.Body)
			}
		})
	}
}

func TestMethodsAndPaths(t *testing.T) {
	pub := &fakePublisher{}
	h := newHandler(pub)
	for _, path := range []string{eventsPath, batchPath} {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
			resp := do(h, request{method: method, path: path, contentType: "application/json", body: `{"type":"a"}`})
			if resp.status != 405 {
				t.Errorf("%s %s: status = %d, want 405", method, path, resp.status)
			}
			if allow := resp.header.Get("Allow"); allow != "POST" {
				t.Errorf("%s %s: Allow = %q, want POST", method, path, allow)
			}
			jsonEqual(t, resp.body, errorJSON(405, "MethodNotAllowed", fmt.Sprintf("method %q is not allowed, use POST", method)))
		}
	}
	for _, path := range []string{"/", "/v1/namespaces/team-a", "/v1/namespaces/team-a/events/x", "/v1/namespaces/team-a/event", "/v2/namespaces/team-a/events"} {
		resp := do(h, request{path: path, contentType: "application/json", body: `{"type":"a"}`})
		if resp.status != 404 {
			t.Errorf("POST %s: status = %d, want 404", path, resp.status)
		}
		jsonEqual(t, resp.body, errorJSON(404, "NotFound", fmt.Sprintf("no such endpoint: %q", path)))
	}
	if pub.callCount() != 0 {
		t.Errorf("Publish called %d times", pub.callCount())
	}
}

func TestBodyLimit(t *testing.T) {
	const limit = 64
	valid := `{"type":"a","data":"` + strings.Repeat("x", limit-len(`{"type":"a","data":""}`)) + `"}`
	if len(valid) != limit {
		t.Fatalf("test body is %d bytes", len(valid))
	}
	tooLarge := errorJSON(413, "RequestEntityTooLarge", "request body is larger than the limit of 64 bytes")
	tests := []struct {
		name          string
		body          string
		contentLength int64 // -1: unknown (chunked)
		status        int
		readBody      bool
	}{
		{name: "at the limit", body: valid, contentLength: limit, status: 202, readBody: true},
		{name: "at the limit, chunked", body: valid, contentLength: -1, status: 202, readBody: true},
		{name: "declared too large", body: valid + " ", contentLength: limit + 1, status: 413, readBody: false},
		{name: "chunked too large", body: valid + " ", contentLength: -1, status: 413, readBody: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePublisher{}
			h := newHandler(pub, func(o *ingest.Options) { o.MaxBodyBytes = limit })
			probe := &bodyProbe{r: strings.NewReader(tt.body)}
			r := httptest.NewRequest(http.MethodPost, eventsPath, probe)
			r.ContentLength = tt.contentLength
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", w.Code, tt.status, w.Body)
			}
			if tt.status == 413 {
				jsonEqual(t, w.Body.String(), tooLarge)
				if pub.callCount() != 0 {
					t.Errorf("Publish called %d times", pub.callCount())
				}
			}
			if probe.read != tt.readBody {
				t.Errorf("body read = %v, want %v", probe.read, tt.readBody)
			}
		})
	}
}

func TestObserve(t *testing.T) {
	type obs struct {
		ns      string
		n       int
		outcome string
	}
	var got []obs
	var mu sync.Mutex
	pub := &fakePublisher{seen: map[string]bool{"team-a/dup": true}, resultErr: map[string]error{"bad": errors.New("boom")}}
	h := newHandler(pub, func(o *ingest.Options) {
		o.Authorizer = &fakeAuthorizer{}
		o.Observe = func(ns string, n int, outcome string) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, obs{ns, n, outcome})
		}
	})
	authz := map[string]string{"Authorization": "Bearer good"}
	do(h, request{path: eventsPath, contentType: "application/json", body: `{"type":"a"}`, header: authz})
	do(h, request{path: eventsPath, contentType: "application/json", body: `{"type":"a..b"}`, header: authz})
	do(h, request{path: eventsPath, contentType: "text/plain", body: `x`, header: authz})
	do(h, request{path: eventsPath, contentType: "application/json", body: `{"type":"a"}`}) // unauthenticated: not observed
	do(h, request{path: "/v1/namespaces/team-b/events", contentType: "application/json", body: `{"type":"a"}`, header: authz})
	do(h, request{path: batchPath, contentType: "application/json", header: authz,
		body: `{"events":[{"type":"a"},{"id":"dup","type":"a"},{"type":""},{"id":"bad","type":"a"},{"type":"b"}]}`})

	want := []obs{
		{"team-a", 1, ingest.OutcomeAccepted},
		{"team-a", 1, ingest.OutcomeRejected},
		{"team-a", 1, ingest.OutcomeRejected},
		{"team-a", 1, ingest.OutcomeRejected},
		{"team-a", 2, ingest.OutcomeAccepted},
		{"team-a", 1, ingest.OutcomeDuplicate},
		{"team-a", 1, ingest.OutcomeFailed},
	}
	// The batch's outcomes come from a map; order them for comparison.
	sortTail := func(o []obs) {
		tail := o[4:]
		for i := range tail {
			for j := i + 1; j < len(tail); j++ {
				if tail[j].outcome < tail[i].outcome {
					tail[i], tail[j] = tail[j], tail[i]
				}
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("observations = %v, want %v", got, want)
	}
	sortTail(got)
	sortTail(want)
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(obs{})); diff != "" {
		t.Errorf("observations (-want +got):\n%s", diff)
	}
}

func TestDefaultIDs(t *testing.T) {
	pub := &fakePublisher{}
	h := ingest.NewHandler(pub, ingest.Options{Logger: slog.New(slog.DiscardHandler)})
	pattern := regexp.MustCompile(`^evt_[0-9a-f]{32}$`)
	var ids []string
	for range 3 {
		resp := do(h, request{path: eventsPath, contentType: "application/json", body: `{"type":"a"}`})
		var body struct{ ID string }
		if err := json.Unmarshal([]byte(resp.body), &body); err != nil || resp.status != 202 {
			t.Fatalf("status %d body %s", resp.status, resp.body)
		}
		if !pattern.MatchString(body.ID) {
			t.Fatalf("generated id %q does not match %s", body.ID, pattern)
		}
		raw, _ := hex.DecodeString(strings.TrimPrefix(body.ID, "evt_"))
		u, err := uuid.FromBytes(raw)
		if err != nil || u.Version() != 7 {
			t.Fatalf("generated id %q is not a UUIDv7", body.ID)
		}
		ids = append(ids, body.ID)
	}
	if ids[0] == ids[1] || ids[1] == ids[2] {
		t.Fatalf("generated ids repeat: %v", ids)
	}
	// The real clock stamps events when none is injected.
	for _, e := range pub.events() {
		if e.Time.Location() != time.UTC || time.Since(e.Time) > time.Hour || e.Time.After(time.Now()) {
			t.Errorf("event time %v is not the reception time in UTC", e.Time)
		}
	}
}

// TestOverHTTP checks the exact bytes a producer receives through a real
// HTTP server.
func TestOverHTTP(t *testing.T) {
	pub := &fakePublisher{}
	srv := httptest.NewServer(newHandler(pub))
	t.Cleanup(srv.Close)

	resp, err := http.Post(srv.URL+eventsPath, "application/json", bytes.NewBufferString(`{"id":"wire-1","type":"a.b","data":{"x":"<y>"}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 202 || string(got) != "{\"id\":\"wire-1\"}\n" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
	if diff := cmp.Diff([]ingest.Event{ev("wire-1", "a.b", `{"x":"<y>"}`, now)}, pub.events()); diff != "" {
		t.Errorf("stored events (-want +got):\n%s", diff)
	}

	resp, err = http.Post(srv.URL+eventsPath, "application/json", bytes.NewBufferString(`{"type":"a.>"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"status":400,"reason":"BadRequest","message":"type: \"a.>\" is not a valid event type: wildcard \">\" in segment 2 is only allowed in patterns"}` + "\n"
	if resp.StatusCode != 400 || string(got) != want {
		t.Fatalf("got %d %s, want 400 %s", resp.StatusCode, got, want)
	}
}
