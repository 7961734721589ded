package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hookline/hookline/internal/ingest"
)

// fakeTester records test deliveries and answers with res or err.
type fakeTester struct {
	mu     sync.Mutex
	events []ingest.Event
	res    ingest.TestResult
	err    error
}

func (f *fakeTester) TestDelivery(_ context.Context, namespace, name string, ev ingest.Event) (ingest.TestResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev.Namespace = namespace + "/" + name
	f.events = append(f.events, ev)
	res := f.res
	res.ID = ev.ID
	return res, f.err
}

const testPath = "/v1/namespaces/team-a/subscriptions/orders:test"

func TestTestDelivery(t *testing.T) {
	ok := ingest.TestResult{Success: true, StatusCode: 204, LatencyMs: 12.5, SignedWith: []string{"k-1"}, CurrentKey: "k-1"}
	tests := []struct {
		name       string
		auth       string
		body       string
		err        error
		status     int
		wantBody   string // without the generated id, for 200
		wantType   string
		wantData   string
		noDelivery bool
	}{
		{name: "defaults", status: 200, wantType: "hookline.test", wantData: `{"message":"Test delivery from kubectl hookline"}`,
			wantBody: `{"success":true,"statusCode":204,"latencyMs":12.5,"signedWith":["k-1"],"currentKey":"k-1"}`},
		{name: "type and data", body: `{"type":"order.created","data":{"total": 42}}`, status: 200, wantType: "order.created", wantData: `{"total":42}`,
			wantBody: `{"success":true,"statusCode":204,"latencyMs":12.5,"signedWith":["k-1"],"currentKey":"k-1"}`},
		{name: "bad type", body: `{"type":"order..created"}`, status: 400, noDelivery: true,
			wantBody: errorJSON(400, "BadRequest", `type: "order..created" is not a valid event type: empty segment at position 2`)},
		{name: "unknown field", body: `{"kind":"x"}`, status: 400, noDelivery: true,
			wantBody: errorJSON(400, "BadRequest", `unknown field "kind", accepted fields are type and data`)},
		{name: "replay editors are not producers", auth: "Bearer editor", status: 403, noDelivery: true,
			wantBody: errorJSON(403, "Forbidden", `not allowed to send a test event in namespace "team-a": create on webhookevents.hookline.dev is required`)},
		{name: "not served", err: fmt.Errorf("x: %w", ingest.ErrSubscriptionNotFound), status: 404,
			wantBody: errorJSON(404, "NotFound", `subscription "orders" in namespace "team-a" is not served by this dispatcher`)},
		{name: "not deliverable", err: fmt.Errorf("%w: Secret tls not found", ingest.ErrNotDeliverable), status: 409,
			wantBody: errorJSON(409, "Conflict", `subscription cannot be delivered to: Secret tls not found`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tester := &fakeTester{res: ok, err: tt.err}
			h := newHandler(&fakePublisher{}, func(o *ingest.Options) {
				o.Authorizer = &fakeAuthorizer{}
				o.Tester = tester
			})
			r := httptest.NewRequest(http.MethodPost, testPath, strings.NewReader(tt.body))
			auth := tt.auth
			if auth == "" {
				auth = "Bearer good"
			}
			r.Header.Set("Authorization", auth)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", w.Code, tt.status, w.Body)
			}
			if tt.noDelivery {
				if len(tester.events) != 0 {
					t.Errorf("delivered %v, want nothing", tester.events)
				}
				if tt.wantBody != "" {
					jsonEqual(t, w.Body.String(), tt.wantBody)
				}
				return
			}
			if len(tester.events) != 1 {
				t.Fatalf("delivered %d events, want 1", len(tester.events))
			}
			ev := tester.events[0]
			if tt.status != 200 {
				jsonEqual(t, w.Body.String(), tt.wantBody)
				return
			}
			var got map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got["id"] != ev.ID || !strings.HasPrefix(ev.ID, "test_") {
				t.Errorf("id %v, event %q: want the same test_ id", got["id"], ev.ID)
			}
			delete(got, "id")
			rest, _ := json.Marshal(got)
			jsonEqual(t, string(rest), tt.wantBody)
			if ev.Namespace != "team-a/orders" || ev.Type != tt.wantType || string(ev.Data) != tt.wantData || ev.Time.IsZero() {
				t.Errorf("event %+v, want type %s data %s for team-a/orders", ev, tt.wantType, tt.wantData)
			}
		})
	}
}
