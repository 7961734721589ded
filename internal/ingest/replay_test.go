package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookline/hookline/internal/ingest"
)

// replayCall is one call of fakeReplayer.Replay.
type replayCall struct {
	Namespace, Name string
	Since, Until    time.Time
}

// fakeReplayer records replay requests and answers with n or err.
type fakeReplayer struct {
	mu    sync.Mutex
	calls []replayCall
	n     int
	err   error
}

func (f *fakeReplayer) Replay(_ context.Context, namespace, name string, since, until time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, replayCall{namespace, name, since, until})
	return f.n, f.err
}

const replayPath = "/v1/namespaces/team-a/subscriptions/orders:replay"

func TestReplay(t *testing.T) {
	challenge := `Bearer realm="hookline"`
	editorReplay := `editor@update webhooksubscriptions.hookline.dev "orders" in namespace "team-a"`
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	until := time.Date(2026, 3, 1, 22, 30, 0, 500000000, time.UTC)
	tests := []struct {
		name        string
		method      string // POST when empty
		path        string // replayPath when empty
		auth        string // Authorization header; "Bearer editor" when empty, none when "-"
		contentType string
		body        string
		replayErr   error
		status      int
		wantBody    string
		challenge   bool
		authCalls   []string
		replays     []replayCall
		bodyRead    bool
	}{
		{name: "empty body replays everything", status: 200, wantBody: `{"replayed":3}`,
			authCalls: []string{editorReplay}, replays: []replayCall{{"team-a", "orders", time.Time{}, time.Time{}}}, bodyRead: true},
		{name: "window", contentType: "application/json", body: `{"since":"2026-03-01T12:00:00Z","until":"2026-03-02T00:30:00.5+02:00"}`,
			status: 200, wantBody: `{"replayed":3}`, authCalls: []string{editorReplay}, replays: []replayCall{{"team-a", "orders", since, until}}, bodyRead: true},
		{name: "null bounds and no content type", body: `{"since":null,"until":"2026-03-02T00:30:00.5+02:00"}`,
			status: 200, wantBody: `{"replayed":3}`, authCalls: []string{editorReplay}, replays: []replayCall{{"team-a", "orders", time.Time{}, until}}, bodyRead: true},
		{name: "white space body", contentType: "text/plain", body: " \n", status: 200, wantBody: `{"replayed":3}`,
			authCalls: []string{editorReplay}, replays: []replayCall{{"team-a", "orders", time.Time{}, time.Time{}}}, bodyRead: true},
		{name: "since not a time", contentType: "application/json", body: `{"since":"yesterday"}`, status: 400,
			wantBody: errorJSON(400, "BadRequest", `since: must be an RFC 3339 time, found "yesterday"`), authCalls: []string{editorReplay}, bodyRead: true},
		{name: "until not a string", body: `{"until":1772366400}`, status: 400,
			wantBody: errorJSON(400, "BadRequest", `until: must be an RFC 3339 time, found a number`), authCalls: []string{editorReplay}, bodyRead: true},
		{name: "until before since", body: `{"since":"2026-03-02T00:00:00Z","until":"2026-03-01T00:00:00Z"}`, status: 400,
			wantBody: errorJSON(400, "BadRequest", `until: must not be before since`), authCalls: []string{editorReplay}, bodyRead: true},
		{name: "unknown field", body: `{"from":"2026-03-02T00:00:00Z"}`, status: 400,
			wantBody: errorJSON(400, "BadRequest", `unknown field "from", accepted fields are since and until`), authCalls: []string{editorReplay}, bodyRead: true},
		{name: "not an object", body: `["2026-03-02T00:00:00Z"]`, status: 400,
			wantBody: errorJSON(400, "BadRequest", `body must be a JSON object, found an array`), authCalls: []string{editorReplay}, bodyRead: true},
		{name: "malformed JSON", body: `{"since":`, status: 400,
			wantBody: errorJSON(400, "BadRequest", `malformed JSON at byte 9: unexpected end of JSON input`), authCalls: []string{editorReplay}, bodyRead: true},
		{name: "not JSON content type", contentType: "text/plain", body: `{}`, status: 415,
			wantBody: errorJSON(415, "UnsupportedMediaType", `Content-Type "text/plain" is not supported; accepted: application/json`), authCalls: []string{editorReplay}, bodyRead: true},
		{name: "no token", auth: "-", body: `{"since":"x"}`, status: 401, challenge: true,
			wantBody: errorJSON(401, "Unauthorized", `a bearer token is required: send "Authorization: Bearer <token>" with a ServiceAccount token for audience hookline`)},
		{name: "rejected token", auth: "Bearer s3cr3t", status: 401, challenge: true,
			authCalls: []string{`s3cr3t@update webhooksubscriptions.hookline.dev "orders" in namespace "team-a"`},
			wantBody:  errorJSON(401, "Unauthorized", "the bearer token is not valid for audience hookline")},
		{name: "producer may not replay", auth: "Bearer good", body: `{"since":"x"}`, status: 403,
			authCalls: []string{`good@update webhooksubscriptions.hookline.dev "orders" in namespace "team-a"`},
			wantBody:  errorJSON(403, "Forbidden", `not allowed to replay subscription "orders" in namespace "team-a": update on webhooksubscriptions.hookline.dev is required`)},
		{name: "editor of another namespace", path: "/v1/namespaces/team-b/subscriptions/orders:replay", status: 403,
			authCalls: []string{`editor@update webhooksubscriptions.hookline.dev "orders" in namespace "team-b"`},
			wantBody:  errorJSON(403, "Forbidden", `not allowed to replay subscription "orders" in namespace "team-b": update on webhooksubscriptions.hookline.dev is required`)},
		{name: "authorizer unavailable", auth: "Bearer broken", status: 503,
			authCalls: []string{`broken@update webhooksubscriptions.hookline.dev "orders" in namespace "team-a"`},
			wantBody:  errorJSON(503, "ServiceUnavailable", "cannot authorize the request now, retry later")},
		{name: "subscription not served", replayErr: fmt.Errorf("looking up team-a/orders: %w", ingest.ErrSubscriptionNotFound), status: 404,
			wantBody:  errorJSON(404, "NotFound", `subscription "orders" in namespace "team-a" is not served by this dispatcher`),
			authCalls: []string{editorReplay}, replays: []replayCall{{"team-a", "orders", time.Time{}, time.Time{}}}, bodyRead: true},
		{name: "replay fails", replayErr: errors.New("nats: timeout"), status: 503,
			wantBody:  errorJSON(503, "ServiceUnavailable", "the replay did not complete, retry later to replay the remaining dead letters"),
			authCalls: []string{editorReplay}, replays: []replayCall{{"team-a", "orders", time.Time{}, time.Time{}}}, bodyRead: true},
		{name: "GET", method: http.MethodGet, status: 405,
			wantBody: errorJSON(405, "MethodNotAllowed", `method "GET" is not allowed, use POST`)},
		{name: "invalid name", path: "/v1/namespaces/team-a/subscriptions/Orders:replay", status: 400,
			wantBody: errorJSON(400, "BadRequest", `name: "Orders" is not a valid subscription name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`)},
		{name: "empty name", path: "/v1/namespaces/team-a/subscriptions/:replay", status: 400,
			wantBody: errorJSON(400, "BadRequest", `name: required before :replay`)},
		{name: "invalid namespace", path: "/v1/namespaces/Team/subscriptions/orders:replay", status: 400,
			wantBody: errorJSON(400, "BadRequest", `namespace: "Team" is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`)},
		{name: "other action", path: "/v1/namespaces/team-a/subscriptions/orders:rewind", status: 404,
			wantBody: errorJSON(404, "NotFound", `no such endpoint: "/v1/namespaces/team-a/subscriptions/orders:rewind"`)},
		{name: "no action", path: "/v1/namespaces/team-a/subscriptions/orders", status: 404,
			wantBody: errorJSON(404, "NotFound", `no such endpoint: "/v1/namespaces/team-a/subscriptions/orders"`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePublisher{}
			az := &fakeAuthorizer{}
			rp := &fakeReplayer{n: 3, err: tt.replayErr}
			h := newHandler(pub, func(o *ingest.Options) {
				o.Authorizer = az
				o.Replayer = rp
			})
			method, path := tt.method, tt.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = replayPath
			}
			probe := &bodyProbe{r: strings.NewReader(tt.body)}
			r := httptest.NewRequest(method, path, probe)
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			switch tt.auth {
			case "":
				r.Header.Set("Authorization", "Bearer editor")
			case "-":
			default:
				r.Header.Set("Authorization", tt.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)

			if w.Code != tt.status {
				t.Errorf("status = %d, want %d (body %s)", w.Code, tt.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			jsonEqual(t, w.Body.String(), tt.wantBody)
			if got := w.Header().Get("WWW-Authenticate"); (got == challenge) != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want challenge %v", got, tt.challenge)
			}
			if tt.status == 405 && w.Header().Get("Allow") != "POST" {
				t.Errorf("Allow = %q, want POST", w.Header().Get("Allow"))
			}
			if diff := cmp.Diff(tt.authCalls, az.calls); diff != "" {
				t.Errorf("authorizer calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.replays, rp.calls); diff != "" {
				t.Errorf("Replay calls (-want +got):\n%s", diff)
			}
			if tt.body != "" && probe.read != tt.bodyRead {
				t.Errorf("body read = %v, want %v", probe.read, tt.bodyRead)
			}
			if pub.callCount() != 0 {
				t.Errorf("Publish called %d times", pub.callCount())
			}
		})
	}
}

func TestReplayWithoutReplayer(t *testing.T) {
	h := newHandler(&fakePublisher{}, func(o *ingest.Options) { o.Authorizer = &fakeAuthorizer{} })
	resp := do(h, request{path: replayPath, header: map[string]string{"Authorization": "Bearer editor"}})
	if resp.status != 404 {
		t.Errorf("status = %d, want 404", resp.status)
	}
	jsonEqual(t, resp.body, errorJSON(404, "NotFound", "this dispatcher does not replay dead letters"))
}

// TestReplayOverHTTP checks the exact bytes a caller receives through a
// real HTTP server, without authentication.
func TestReplayOverHTTP(t *testing.T) {
	rp := &fakeReplayer{n: 12}
	srv := httptest.NewServer(newHandler(&fakePublisher{}, func(o *ingest.Options) { o.Replayer = rp }))
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL+replayPath, "application/json", bytes.NewBufferString(`{"since":"2026-03-01T12:00:00Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || string(got) != "{\"replayed\":12}\n" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
	want := []replayCall{{"team-a", "orders", time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), time.Time{}}}
	if diff := cmp.Diff(want, rp.calls); diff != "" {
		t.Errorf("Replay calls (-want +got):\n%s", diff)
	}
}
