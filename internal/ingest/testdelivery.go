package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/hookline/hookline/internal/auth"
)

// testSuffix ends the last path segment of a test delivery request,
// POST /v1/namespaces/{namespace}/subscriptions/{name}:test.
const testSuffix = ":test"

// Defaults of a test delivery's event.
const (
	TestEventType = "hookline.test"
	testEventData = `{"message":"Test delivery from kubectl hookline"}`
)

// Tester makes one delivery attempt of an event to one subscription at
// once, outside the queue: not retried, not counted in status. The
// dispatcher implements it.
type Tester interface {
	// TestDelivery attempts ev to the subscription namespace/name. An error
	// wrapping ErrSubscriptionNotFound means this dispatcher does not serve
	// it; one wrapping ErrNotDeliverable that it cannot deliver now, the
	// error saying why.
	TestDelivery(ctx context.Context, namespace, name string, ev Event) (TestResult, error)
}

// ErrNotDeliverable is what a Tester returns (wrapped) for a subscription
// it serves but cannot deliver to (a missing Secret, a refused URL); the
// caller gets 409 with the error's message.
var ErrNotDeliverable = errors.New("subscription cannot be delivered to")

// TestResult is the outcome of a test delivery, as the API answers it.
type TestResult struct {
	ID         string  `json:"id"`
	Success    bool    `json:"success"`
	StatusCode int     `json:"statusCode,omitempty"`
	LatencyMs  float64 `json:"latencyMs"`
	Class      string  `json:"class,omitempty"`
	Message    string  `json:"message,omitempty"`
	// SignedWith are the ids of the keys whose signatures were sent;
	// CurrentKey is the WebhookSecret's current key id.
	SignedWith []string `json:"signedWith"`
	CurrentKey string   `json:"currentKey,omitempty"`
}

// test makes a test delivery, for whoever may publish in the namespace.
func (h *handler) test(w http.ResponseWriter, r *http.Request, name string) {
	ns, body, ok := h.subscriptionRequest(w, r, name, testSuffix, auth.PublishAttributes,
		func(ns string) string {
			return fmt.Sprintf("not allowed to send a test event in namespace %q: create on webhookevents.hookline.dev is required", ns)
		})
	if !ok {
		return
	}
	ev := Event{ID: "test_" + newID()[len("evt_"):], Namespace: ns, Type: TestEventType, Time: h.opts.Clock.Now().UTC(), Data: json.RawMessage(testEventData)}
	if len(body) > 0 {
		if err := decodeTestEvent(body, &ev); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	res, err := h.opts.Tester.TestDelivery(r.Context(), ns, name, ev)
	switch {
	case errors.Is(err, ErrSubscriptionNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("subscription %q in namespace %q is not served by this dispatcher", name, ns))
	case errors.Is(err, ErrNotDeliverable):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		h.opts.Logger.ErrorContext(r.Context(), "Test delivery failed", "namespace", ns, "subscription", name, "error", err)
		writeError(w, http.StatusServiceUnavailable, "the test delivery could not be made, retry later")
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

// decodeTestEvent reads {"type"?, "data"?} into ev.
func decodeTestEvent(data []byte, ev *Event) error {
	members, err := readObject(data, "body")
	if err != nil {
		return err
	}
	for _, m := range members {
		switch m.name {
		case "type":
			t, err := stringField("", "type", m.value)
			if err != nil {
				return err
			}
			if err := validateType("", t); err != nil {
				return err
			}
			ev.Type = t
		case "data":
			if ev.Data, err = compactData("data", m.value); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown field %s, accepted fields are type and data", echo(m.name))
		}
	}
	return nil
}
