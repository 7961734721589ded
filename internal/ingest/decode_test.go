package ingest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/hookline/hookline/internal/eventtype"
)

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestValidateID(t *testing.T) {
	tests := []struct {
		id   string
		want string
	}{
		{id: "a", want: ""},
		{id: "inv_2024-05-06.1:x~y", want: ""},
		{id: strings.Repeat("x", 128), want: ""},
		{id: "", want: "id: must not be empty"},
		{id: strings.Repeat("x", 129), want: "id: is 129 characters long, maximum is 128"},
		{id: "a b", want: `id: "a b": invalid character ' ' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -`},
		{id: "a/b", want: `id: "a/b": invalid character '/' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -`},
		{id: "é", want: `id: "é": invalid character 'é' at position 1, allowed are A-Z a-z 0-9 and . _ ~ : -`},
		{id: "a\xff", want: `id: "a\xff": invalid character '�' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -`},
	}
	for _, tt := range tests {
		if got := errString(validateID("", tt.id)); got != tt.want {
			t.Errorf("validateID(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

func TestValidateType(t *testing.T) {
	tests := []struct {
		path, typ, want string
	}{
		{typ: "invoice.paid", want: ""},
		{typ: "", want: "type: required"},
		{path: "events[2].", typ: "", want: "events[2].type: required"},
		{typ: "a..b", want: `type: "a..b" is not a valid event type: empty segment at position 2`},
		{typ: "a.*", want: `type: "a.*" is not a valid event type: wildcard "*" in segment 2 is only allowed in patterns`},
		{typ: "a.>", want: `type: "a.>" is not a valid event type: wildcard ">" in segment 2 is only allowed in patterns`},
		{typ: "a b", want: `type: "a b" is not a valid event type: invalid character ' ' in segment 1`},
		{typ: strings.Repeat("a", 300), want: "type: not a valid event type: event type is 300 characters long, maximum is 255"},
	}
	for _, tt := range tests {
		if got := errString(validateType(tt.path, tt.typ)); got != tt.want {
			t.Errorf("validateType(%q, %q) = %q, want %q", tt.path, tt.typ, got, tt.want)
		}
	}
}

func TestIsJSONMediaType(t *testing.T) {
	tests := map[string]bool{
		"application/json":                 true,
		"Application/JSON":                 true,
		"application/json; charset=utf-8":  true,
		"application/json; charset=UTF-8":  true,
		"application/cloudevents+json":     true,
		"application/vnd.acme.order+json":  true,
		"text/x+json":                      true,
		"application/json; charset=latin1": false,
		"text/plain":                       false,
		"application/xml":                  false,
		"+json":                            false,
		"application/jsonx":                false,
		"":                                 false,
		"application/json;;":               false,
	}
	for in, want := range tests {
		if got := isJSONMediaType(in); got != want {
			t.Errorf("isJSONMediaType(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header string
		token  string
		ok     bool
	}{
		{header: "Bearer abc.def", token: "abc.def", ok: true},
		{header: "bearer abc", token: "abc", ok: true},
		{header: "BEARER  abc", token: "abc", ok: true},
		{header: "", ok: false},
		{header: "Bearer", ok: false},
		{header: "Bearer ", ok: false},
		{header: "Basic dXNlcjpwYXNz", ok: false},
		{header: "Bearer a b", ok: false},
		{header: "Bearer a\tb", ok: false},
		{header: "Bearerabc", ok: false},
	}
	for _, tt := range tests {
		token, ok := bearerToken(tt.header)
		if token != tt.token || ok != tt.ok {
			t.Errorf("bearerToken(%q) = %q, %v, want %q, %v", tt.header, token, ok, tt.token, tt.ok)
		}
	}
}

func TestCheckContentType(t *testing.T) {
	accepted := []string{contentTypeJSON, contentTypeCE}
	tests := []struct {
		in, want, err string
	}{
		{in: "application/json", want: "application/json"},
		{in: "application/json; charset=utf-8", want: "application/json"},
		{in: "APPLICATION/CLOUDEVENTS+JSON", want: "application/cloudevents+json"},
		{in: "", err: "Content-Type is required; accepted: application/json, application/cloudevents+json"},
		{in: "text/plain", err: `Content-Type "text/plain" is not supported; accepted: application/json, application/cloudevents+json`},
		{in: "application/json; charset=iso-8859-1", err: `charset "iso-8859-1" is not supported, only utf-8 is`},
		{in: "application/cloudevents-batch+json", err: `Content-Type "application/cloudevents-batch+json" is not supported; accepted: application/json, application/cloudevents+json`},
		{in: "application/json;", want: "application/json"},
		{in: "application/json+x", err: `Content-Type "application/json+x" is not supported; accepted: application/json, application/cloudevents+json`},
		{in: "application", err: `Content-Type "application" is not supported; accepted: application/json, application/cloudevents+json`},
	}
	for _, tt := range tests {
		got, rerr := checkContentType(tt.in, accepted)
		var gotErr string
		if rerr != nil {
			gotErr = rerr.message
			if rerr.status != http.StatusUnsupportedMediaType {
				t.Errorf("checkContentType(%q) status = %d, want 415", tt.in, rerr.status)
			}
		}
		if got != tt.want || gotErr != tt.err {
			t.Errorf("checkContentType(%q) = %q, %q, want %q, %q", tt.in, got, gotErr, tt.want, tt.err)
		}
	}
}

func TestDecodeNative(t *testing.T) {
	tests := []struct {
		name string
		body string
		want draft
		err  string
	}{
		{name: "all fields", body: `{"id":"e1","type":"a.b","data":{"x": [1, 2]}}`,
			want: draft{ID: "e1", Type: "a.b", Data: json.RawMessage(`{"x":[1,2]}`)}},
		{name: "no id, no data", body: ` {"type":"a"} `, want: draft{Type: "a", Data: json.RawMessage(`null`)}},
		{name: "null id", body: `{"id":null,"type":"a","data":"s"}`, want: draft{Type: "a", Data: json.RawMessage(`"s"`)}},
		{name: "escaped key", body: `{"typ\u0065":"a"}`, want: draft{Type: "a", Data: json.RawMessage(`null`)}},
		{name: "data keeps escapes and numbers", body: `{"type":"a","data":{"s":"\u00e9\n","n":1.50e+3}}`,
			want: draft{Type: "a", Data: json.RawMessage(`{"s":"\u00e9\n","n":1.50e+3}`)}},
		{name: "unknown field", body: `{"type":"a","Type":"b"}`, err: `unknown field "Type", accepted fields are id, type and data`},
		{name: "long unknown field is cut", body: `{"` + strings.Repeat("f", 100) + `":1}`,
			err: `unknown field "` + strings.Repeat("f", 64) + `"..., accepted fields are id, type and data`},
		{name: "duplicate field", body: `{"type":"a","type":"b"}`, err: `duplicate field "type"`},
		{name: "missing type", body: `{"data":1}`, err: "type: required"},
		{name: "type not a string", body: `{"type":["a"]}`, err: "type: must be a string, found an array"},
		{name: "id not a string", body: `{"id":7,"type":"a"}`, err: "id: must be a string, found a number"},
		{name: "not an object", body: `[]`, err: "body must be a JSON object, found an array"},
		{name: "string body", body: `"x"`, err: "body must be a JSON object, found a string"},
		{name: "empty body", body: ``, err: "malformed JSON at byte 0: unexpected end of JSON input"},
		{name: "truncated", body: `{"type":`, err: "malformed JSON at byte 8: unexpected end of JSON input"},
		{name: "bad token", body: `{"type":x}`, err: "malformed JSON at byte 9: invalid character 'x' looking for beginning of value"},
		{name: "trailing data", body: `{"type":"a"} {}`, err: "malformed JSON at byte 14: invalid character '{' after top-level value"},
		{name: "invalid UTF-8", body: "{\"type\":\"a\",\"data\":\"\xff\"}", err: "body is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeNative([]byte(tt.body), "")
			if errString(err) != tt.err {
				t.Fatalf("error = %q, want %q", errString(err), tt.err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("draft (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeStructured(t *testing.T) {
	base := `"specversion":"1.0","id":"ce-1","source":"/orders","type":"order.created"`
	tests := []struct {
		name string
		body string
		want draft
		err  string
	}{
		{name: "minimal", body: `{` + base + `}`, want: draft{ID: "ce-1", Type: "order.created", Data: json.RawMessage(`null`)}},
		{name: "full", body: `{` + base + `,"time":"2024-05-06T07:08:09.5+02:00","datacontenttype":"application/json","subject":"s","dataschema":"https://x","traceparent":"00-ab","data":{"n": 1}}`,
			want: draft{ID: "ce-1", Type: "order.created", Time: time.Date(2024, 5, 6, 5, 8, 9, 500000000, time.UTC), Data: json.RawMessage(`{"n":1}`)}},
		{name: "vendor JSON content type", body: `{` + base + `,"datacontenttype":"application/vnd.acme+json","data":[1]}`,
			want: draft{ID: "ce-1", Type: "order.created", Data: json.RawMessage(`[1]`)}},
		{name: "null time is absent", body: `{` + base + `,"time":null}`, want: draft{ID: "ce-1", Type: "order.created", Data: json.RawMessage(`null`)}},
		{name: "missing specversion", body: `{"id":"1","source":"s","type":"a"}`, err: "specversion: required"},
		{name: "missing id", body: `{"specversion":"1.0","source":"s","type":"a"}`, err: "id: required"},
		{name: "missing source", body: `{"specversion":"1.0","id":"1","type":"a"}`, err: "source: required"},
		{name: "missing type", body: `{"specversion":"1.0","id":"1","source":"s"}`, err: "type: required"},
		{name: "wrong specversion", body: `{"specversion":"0.3","id":"1","source":"s","type":"a"}`, err: `specversion: must be "1.0", found "0.3"`},
		{name: "specversion number", body: `{"specversion":1.0,"id":"1","source":"s","type":"a"}`, err: "specversion: must be a string, found a number"},
		{name: "empty id", body: `{"specversion":"1.0","id":"","source":"s","type":"a"}`, err: "id: must not be empty"},
		{name: "empty source", body: `{"specversion":"1.0","id":"1","source":"","type":"a"}`, err: "source: must not be empty"},
		{name: "bad id", body: `{"specversion":"1.0","id":"a b","source":"s","type":"a"}`,
			err: `id: "a b": invalid character ' ' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -`},
		{name: "bad type", body: `{"specversion":"1.0","id":"1","source":"s","type":"a..b"}`,
			err: `type: "a..b" is not a valid event type: empty segment at position 2`},
		{name: "bad time", body: `{` + base + `,"time":"yesterday"}`, err: `time: "yesterday" is not an RFC 3339 timestamp`},
		{name: "time without zone", body: `{` + base + `,"time":"2024-05-06T07:08:09"}`, err: `time: "2024-05-06T07:08:09" is not an RFC 3339 timestamp`},
		{name: "non-JSON content type", body: `{` + base + `,"datacontenttype":"text/plain","data":"x"}`,
			err: `datacontenttype: "text/plain" is not supported, only JSON data (application/json or */*+json) is`},
		{name: "data_base64", body: `{` + base + `,"data_base64":"AAEC"}`,
			err: `data_base64: not supported, only JSON data is; send the payload as "data" with a JSON datacontenttype`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeStructured([]byte(tt.body), "")
			if errString(err) != tt.err {
				t.Fatalf("error = %q, want %q", errString(err), tt.err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("draft (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeBinary(t *testing.T) {
	headers := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	full := []string{"ce-specversion", "1.0", "ce-id", "b-1", "ce-source", "/src", "ce-type", "a.b"}
	tests := []struct {
		name   string
		header http.Header
		body   string
		want   draft
		err    string
	}{
		{name: "with data", header: headers(full...), body: `{ "x" : 1 }`, want: draft{ID: "b-1", Type: "a.b", Data: json.RawMessage(`{"x":1}`)}},
		{name: "empty body", header: headers(full...), body: ``, want: draft{ID: "b-1", Type: "a.b", Data: json.RawMessage(`null`)}},
		{name: "time", header: headers(append(full, "ce-time", "2024-01-01T00:00:00Z")...), body: `1`,
			want: draft{ID: "b-1", Type: "a.b", Time: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Data: json.RawMessage(`1`)}},
		{name: "missing type", header: headers(full[:6]...), err: "ce-type: required"},
		{name: "missing source", header: headers("ce-specversion", "1.0", "ce-id", "1", "ce-type", "a"), err: "ce-source: required"},
		{name: "wrong version", header: headers("ce-specversion", "0.3", "ce-id", "1", "ce-source", "s", "ce-type", "a"), err: `ce-specversion: must be "1.0", found "0.3"`},
		{name: "bad id", header: headers("ce-specversion", "1.0", "ce-id", "x/y", "ce-source", "s", "ce-type", "a"),
			err: `ce-id: "x/y": invalid character '/' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -`},
		{name: "bad type", header: headers("ce-specversion", "1.0", "ce-id", "1", "ce-source", "s", "ce-type", "a.*"),
			err: `ce-type: "a.*" is not a valid event type: wildcard "*" in segment 2 is only allowed in patterns`},
		{name: "bad time", header: headers(append(full, "ce-time", "now")...), err: `ce-time: "now" is not an RFC 3339 timestamp`},
		{name: "repeated id", header: headers(append(full, "ce-id", "b-2")...), err: "ce-id: given 2 times, must be given once"},
		{name: "malformed data", header: headers(full...), body: `{"x":}`, err: "data: malformed JSON at byte 6: invalid character '}' looking for beginning of value"},
		{name: "invalid UTF-8 data", header: headers(full...), body: "\"\xfe\"", err: "data: not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeBinary(tt.header, []byte(tt.body))
			if errString(err) != tt.err {
				t.Fatalf("error = %q, want %q", errString(err), tt.err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("draft (-want +got):\n%s", diff)
			}
		})
	}
}

// checkDraft asserts what every accepted event must satisfy, whatever the
// input: the invariants downstream code relies on.
func checkDraft(t *testing.T, d draft) {
	t.Helper()
	if err := eventtype.ValidateType(d.Type); err != nil {
		t.Fatalf("accepted an invalid type: %v", err)
	}
	if !json.Valid(d.Data) || !utf8.Valid(d.Data) {
		t.Fatalf("accepted invalid data %q", d.Data)
	}
	if d.ID != "" {
		if err := validateID("", d.ID); err != nil {
			t.Fatalf("accepted an invalid id: %v", err)
		}
	}
	if !d.Time.IsZero() && d.Time.Location() != time.UTC {
		t.Fatalf("time %v is not UTC", d.Time)
	}
}

func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"id":"e1","type":"a.b","data":{"x":[1,2]}}`,
		`{"type":"a"}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"a","time":"2024-05-06T07:08:09.5+02:00","data":null}`,
		`{"events":[{"type":"a"},{"type":"b..c"},3]}`,
		`[{"specversion":"1.0","id":"1","source":"s","type":"a"},{}]`,
		`{"type":"a","data":"\u00e9"}`,
		`{"a":`,
		"\xff",
	}
	for _, s := range seeds {
		f.Add([]byte(s), "a.b", "id-1")
	}
	const maxEvents = 50
	f.Fuzz(func(t *testing.T, body []byte, ceType, ceID string) {
		if d, err := decodeNative(body, ""); err == nil {
			checkDraft(t, d)
		}
		if d, err := decodeStructured(body, ""); err == nil {
			checkDraft(t, d)
			if d.ID == "" {
				t.Fatal("accepted a CloudEvent without id")
			}
		}
		h := http.Header{}
		h.Set("ce-specversion", "1.0")
		h.Set("ce-source", "s")
		h.Set("ce-type", ceType)
		h.Set("ce-id", ceID)
		if d, err := decodeBinary(h, body); err == nil {
			checkDraft(t, d)
		}
		for _, decode := range []func([]byte, int) ([]item, error){decodeNativeBatch, decodeStructuredBatch} {
			items, err := decode(body, maxEvents)
			if err != nil {
				if items != nil {
					t.Fatal("returned items with a request error")
				}
				continue
			}
			if len(items) == 0 || len(items) > maxEvents {
				t.Fatalf("accepted a batch of %d events", len(items))
			}
			for _, it := range items {
				if it.err == nil {
					checkDraft(t, it.draft)
				}
			}
		}
	})
}
