// Package delivery makes one HTTP attempt to deliver one event to one
// webhook endpoint, signed per the Standard Webhooks specification, and
// holds the pure retry policy that decides what happens after it.
//
// It knows nothing of queues or Kubernetes: the caller brings the message,
// the resolved target (URL, static headers, signing keys, timeout, HTTP
// client for its TLS identity, credentials) and the attempt number, and
// gets back a Result and a Decision. It also parses the TLS material a
// subscription names, keeps one HTTP client per TLS identity, fetches
// OAuth2 tokens, and runs the CloudEvents endpoint validation handshake.
package delivery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/hookline/hookline/internal/keys"
)

// Message is one event as delivered.
type Message struct {
	// ID is the event ID, sent as webhook-id and identical on every attempt
	// so receivers can deduplicate.
	ID string
	// Type is the event type, such as "order.created".
	Type string
	// Time is when the event happened; it is sent in UTC.
	Time time.Time
	// Data is the event payload as raw JSON. Nil or empty means null.
	Data json.RawMessage
	// Encoded, when set, is Body of this message, encoded already by the
	// caller: an event fanned out to many subscriptions has one body,
	// since only the signatures and headers differ, so it is encoded once
	// rather than for each. Send sends and signs these bytes as they are.
	Encoded []byte
}

// Target is where and how to deliver.
type Target struct {
	// URL is the absolute http or https URL to POST to. It may carry a
	// token in its query, so it never appears in a Result.
	URL string
	// Header holds extra static headers, already resolved. Values may come
	// from Secrets: they are never logged nor put in a Result. They cannot
	// replace the headers the sender sets itself (see Send).
	Header http.Header
	// Keys are the signing keys currently valid: the current key first,
	// then the previous one while a rotation overlaps. Each adds one
	// signature to webhook-signature.
	Keys []keys.Key
	// Timeout bounds the whole attempt, from dialling to reading the
	// response, including any token fetch and the one retry after a 401.
	// Zero or less means DefaultTimeout.
	Timeout time.Duration
	// Client sends this target's requests; nil means the Sender's. It is
	// how a subscription gets its own TLS settings (see Clients), and it
	// should come from NewClient so that redirects are not followed.
	Client *http.Client
	// Auth adds credentials to each request; nil adds none.
	Auth Authenticator
}

// DefaultTimeout bounds an attempt whose Target has no Timeout.
const DefaultTimeout = 30 * time.Second

var jsonNull = json.RawMessage("null")

// Body encodes the delivered body {"type","timestamp","data"}, with the
// timestamp as m.Time in UTC RFC 3339 with nanoseconds and data compacted.
// These exact bytes are both signed and sent. It fails if m.Data is not
// valid JSON.
//
// It runs for every attempt of every event (once per event when callers
// share it through Message.Encoded), so it appends the parts
// directly rather than going through reflection: the output is byte for
// byte what encoding/json gives for the same fields without HTML escaping,
// which would rewrite <, > and & inside the producer's strings.
func Body(m Message) ([]byte, error) {
	data := m.Data
	if len(bytes.TrimSpace(data)) == 0 {
		data = jsonNull
	}
	buf := bytes.NewBuffer(make([]byte, 0, len(data)+len(m.Type)+64))
	buf.WriteString(`{"type":`)
	if err := appendString(buf, m.Type); err != nil {
		return nil, fmt.Errorf("encode delivery body for event %q: %w", m.ID, err)
	}
	buf.WriteString(`,"timestamp":"`)
	buf.Write(m.Time.UTC().AppendFormat(buf.AvailableBuffer(), time.RFC3339Nano))
	buf.WriteString(`","data":`)
	// Compact validates as it goes and writes nothing on an error.
	if err := json.Compact(buf, data); err != nil {
		return nil, fmt.Errorf("encode delivery body for event %q: %w", m.ID, err)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// appendString writes s as a JSON string. Event types are plain ASCII, which
// is written as is; anything else goes through encoding/json so that the
// escaping stays exactly its own.
func appendString(buf *bytes.Buffer, s string) error {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\'
	}
	if plain {
		buf.WriteByte('"')
		buf.WriteString(s)
		buf.WriteByte('"')
		return nil
	}
	var quoted bytes.Buffer
	enc := json.NewEncoder(&quoted)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return err
	}
	buf.Write(bytes.TrimSuffix(quoted.Bytes(), []byte{'\n'}))
	return nil
}
