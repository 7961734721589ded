package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/keys"
)

func TestBody(t *testing.T) {
	when := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	plus2 := time.FixedZone("UTC+2", 2*60*60)
	for _, tc := range []struct {
		name    string
		m       Message
		want    string
		wantErr string
	}{
		{
			name: "object data",
			m:    Message{ID: "e1", Type: "order.created", Time: when, Data: json.RawMessage(`{"id":42,"total":"9.99"}`)},
			want: `{"type":"order.created","timestamp":"2026-03-14T15:09:26.535897932Z","data":{"id":42,"total":"9.99"}}`,
		},
		{
			name: "data is compacted",
			m:    Message{Type: "a", Time: when, Data: json.RawMessage("{\n  \"a\": [1, 2,\t3]\n}\n")},
			want: `{"type":"a","timestamp":"2026-03-14T15:09:26.535897932Z","data":{"a":[1,2,3]}}`,
		},
		{
			name: "HTML characters and unicode kept as sent",
			m:    Message{Type: "a", Time: when, Data: json.RawMessage(`{"html":"<b>&amp;</b>","u":"\u00e9t\u00e9","raw":"été"}`)},
			want: `{"type":"a","timestamp":"2026-03-14T15:09:26.535897932Z","data":{"html":"<b>&amp;</b>","u":"\u00e9t\u00e9","raw":"été"}}`,
		},
		{
			name: "time converted to UTC",
			m:    Message{Type: "a", Time: time.Date(2026, 3, 14, 17, 0, 0, 0, plus2), Data: json.RawMessage(`1`)},
			want: `{"type":"a","timestamp":"2026-03-14T15:00:00Z","data":1}`,
		},
		{
			name: "trailing zeros of the fraction dropped",
			m:    Message{Type: "a", Time: time.Date(2026, 3, 14, 15, 0, 0, 500000000, time.UTC), Data: json.RawMessage(`"x"`)},
			want: `{"type":"a","timestamp":"2026-03-14T15:00:00.5Z","data":"x"}`,
		},
		{
			name: "nil data is null",
			m:    Message{Type: "a", Time: when},
			want: `{"type":"a","timestamp":"2026-03-14T15:09:26.535897932Z","data":null}`,
		},
		{
			name: "blank data is null",
			m:    Message{Type: "a", Time: when, Data: json.RawMessage(" \n")},
			want: `{"type":"a","timestamp":"2026-03-14T15:09:26.535897932Z","data":null}`,
		},
		{
			name: "type with characters JSON escapes",
			m:    Message{Type: "a\"b\\c\nd\u2028<é>", Time: when, Data: json.RawMessage(`1`)},
			want: `{"type":"a\"b\\c\nd\u2028<é>","timestamp":"2026-03-14T15:09:26.535897932Z","data":1}`,
		},
		{
			name:    "invalid data",
			m:       Message{ID: "e9", Type: "a", Time: when, Data: json.RawMessage(`{"a":`)},
			wantErr: `encode delivery body for event "e9"`,
		},
		{
			name:    "two values",
			m:       Message{ID: "e9", Type: "a", Time: when, Data: json.RawMessage(`1 2`)},
			wantErr: `encode delivery body for event "e9"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Body(tc.m)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Body() = %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Body(): %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("Body() =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestBodyMatchesEncodingJSON checks Body against encoding/json encoding
// the same fields, the way the body was first defined.
func TestBodyMatchesEncodingJSON(t *testing.T) {
	reference := func(m Message) string {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		err := enc.Encode(struct {
			Type      string          `json:"type"`
			Timestamp string          `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
		}{m.Type, m.Time.UTC().Format(time.RFC3339Nano), m.Data})
		if err != nil {
			t.Fatalf("reference encoding of %q: %v", m.Data, err)
		}
		return strings.TrimSuffix(buf.String(), "\n")
	}
	types := []string{"order.created", "a.b-c_d", "", "é", "<&>", "tab\there", "quote\"", "back\\slash", "\u2029", "bad\xffutf8", "ctl\x01"}
	datas := []string{`{"a":1}`, " [1, 2 ,3] ", `"<b>&amp;</b>"`, `{"s":"\u00e9\n","n":-1.5e3,"t":true,"f":false,"z":null}`, "\"\u2028\""}
	for _, typ := range types {
		for _, data := range datas {
			m := Message{ID: "e", Type: typ, Time: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("X", 3600)), Data: json.RawMessage(data)}
			got, err := Body(m)
			if err != nil {
				t.Fatalf("Body(%q, %q): %v", typ, data, err)
			}
			if want := reference(m); string(got) != want {
				t.Errorf("Body(%q, %q) =\n%s\nencoding/json gives\n%s", typ, data, got, want)
			}
		}
	}
}

// BenchmarkBody encodes the body of a typical 512-byte event, once per
// delivery attempt.
func BenchmarkBody(b *testing.B) {
	m := Message{ID: "evt_1", Type: "order.created", Time: time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC),
		Data: json.RawMessage(`{"order":"1042","total":42,"pad":"` + strings.Repeat("x", 470) + `"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Body(m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSendEncodedBody: a body the caller encoded already (once for every
// subscription an event fans out to) is sent and signed exactly as given.
func TestSendEncodedBody(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	k := newKey(t, keys.HMACSHA256)
	shared, err := Body(orderCreated)
	if err != nil {
		t.Fatal(err)
	}
	// Different bytes from what Send would encode, to tell which it sent.
	shared = append(bytes.TrimSuffix(shared, []byte("}")), []byte(`,"shared":true}`)...)
	m := orderCreated
	m.Encoded = shared

	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	if res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{k}}, m); !res.Success {
		t.Fatalf("Send failed: %+v", res)
	}
	got := rec.only(t)
	if !bytes.Equal(got.Body, shared) {
		t.Errorf("body =\n%s\nwant the encoded one\n%s", got.Body, shared)
	}
	if sig, want := got.Header.Get("Webhook-Signature"), k.Sign(m.ID, sentAt.Unix(), shared); sig != want {
		t.Errorf("webhook-signature = %q, want %q over the encoded body", sig, want)
	}
}
