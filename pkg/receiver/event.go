package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event is a verified delivery, decoded from the body
// {"type": ..., "timestamp": ..., "data": ...} of the Standard Webhooks
// payload structure.
type Event struct {
	// ID is webhook-id: the same on every attempt to deliver the event,
	// and so the key to deduplicate by.
	ID string
	// Type is the event type, such as "order.created".
	Type string
	// Timestamp is when the event happened (not when it was sent), or the
	// zero time if the payload has none.
	Timestamp time.Time
	// Data is the event payload as raw JSON, or nil if the body has no
	// "data" member.
	Data json.RawMessage
}

// ErrInvalidPayload: the body is not a JSON object with a non-empty string
// "type" and, when present, an RFC 3339 "timestamp".
var ErrInvalidPayload = errors.New("invalid webhook payload")

// DecodeEvent decodes a verified body into an Event with the given ID
// (webhook-id). Members other than type, timestamp and data are ignored,
// so that senders can add metadata. The error wraps ErrInvalidPayload.
func DecodeEvent(id string, body []byte) (Event, error) {
	// Only an object is a payload; this also keeps the signed content
	// "<id>.<timestamp>.<body>" from having a second reading (see checkID).
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return Event{}, fmt.Errorf("decode webhook event: %w: body is not a JSON object", ErrInvalidPayload)
	}
	var p struct {
		Type      *string         `json:"type"`
		Timestamp *string         `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return Event{}, fmt.Errorf("decode webhook event: %w: %w", ErrInvalidPayload, err)
	}
	if p.Type == nil || *p.Type == "" {
		return Event{}, fmt.Errorf("decode webhook event: %w: no \"type\"", ErrInvalidPayload)
	}
	e := Event{ID: id, Type: *p.Type, Data: p.Data}
	if p.Timestamp != nil {
		ts, err := time.Parse(time.RFC3339Nano, *p.Timestamp)
		if err != nil {
			return Event{}, fmt.Errorf("decode webhook event: %w: \"timestamp\" is not RFC 3339", ErrInvalidPayload)
		}
		e.Timestamp = ts
	}
	return e, nil
}

type eventKey struct{}

// WithEvent returns a copy of ctx carrying e, for EventFrom. Middleware
// does this; it is exported for tests of handlers that sit behind it.
func WithEvent(ctx context.Context, e Event) context.Context {
	return context.WithValue(ctx, eventKey{}, e)
}

// EventFrom returns the verified event Middleware put in ctx, and false if
// there is none.
func EventFrom(ctx context.Context) (Event, bool) {
	e, ok := ctx.Value(eventKey{}).(Event)
	return e, ok
}
