package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
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

// nested is n arrays, each holding the next.
func nested(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// TestScanDocument checks the one validating pass against what it
// replaces: encoding/json's syntax check and utf8.Valid on the whole body.
func TestScanDocument(t *testing.T) {
	tests := []struct {
		in    string
		valid bool
	}{
		{`{}`, true},
		{`[]`, true},
		{" \t\r\n1 \t\r\n", true},
		{`"a"`, true},
		{`-0.5e+3`, true},
		{`0`, true},
		{`-0`, true},
		{`1E-2`, true},
		{`true`, true},
		{`false`, true},
		{`null`, true},
		{`{"a":[1,{"b":null},"c",true,false]}`, true},
		{`{ "a" : [ 1 , { } , [ ] ] }`, true},
		{`"\u00e9\n\"\\\/\b\f\r\t\uABcd"`, true},
		{`"\ud800"`, true}, // an escaped lone surrogate is valid JSON
		{"\"é\u2028\U0001F600\x7f\"", true},
		{nested(maxNestingDepth), true},
		{`{"a":` + nested(maxNestingDepth-1) + `}`, true},

		{``, false},
		{` `, false},
		{`{`, false},
		{`}`, false},
		{`{"a"}`, false},
		{`{"a":}`, false},
		{`{"a" 1}`, false},
		{`{a:1}`, false},
		{`{1:1}`, false},
		{`{,}`, false},
		{`{"a":1,}`, false},
		{`{"a":1 "b":2}`, false},
		{`[1,]`, false},
		{`[,1]`, false},
		{`[1 2]`, false},
		{`[1]]`, false},
		{`[1}`, false},
		{`{"a":1]`, false},
		{`01`, false},
		{`1.`, false},
		{`.5`, false},
		{`-`, false},
		{`--1`, false},
		{`1e`, false},
		{`1e+`, false},
		{`+1`, false},
		{`0x1`, false},
		{`NaN`, false},
		{`tru`, false},
		{`nul`, false},
		{`truex`, false},
		{`True`, false},
		{`"abc`, false},
		{`"\`, false},
		{`"\q"`, false},
		{`"\u12g4"`, false},
		{`"\u12"`, false},
		{"\"\x01\"", false},
		{"\"a\tb\"", false},
		{"\"\xff\"", false},
		{"\"\xed\xa0\x80\"", false}, // a surrogate in UTF-8 form
		{"\"\xc0\xaf\"", false},     // an overlong encoding
		{"\"\xe2\x82\"", false},     // a truncated sequence
		{"\xef\xbb\xbf{}", false},   // a byte order mark
		{"\v1", false},
		{`{} {}`, false},
		{`{}x`, false},
		{`1 2`, false},
		{nested(maxNestingDepth + 1), false},
		{`{"a":` + nested(maxNestingDepth) + `}`, false},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 40 {
			name = name[:40]
		}
		if reference := json.Valid([]byte(tt.in)) && utf8.Valid([]byte(tt.in)); reference != tt.valid {
			t.Fatalf("%q: test expects %v, encoding/json and utf8.Valid say %v", name, tt.valid, reference)
		}
		if _, ok := scanDocument([]byte(tt.in), 3); ok != tt.valid {
			t.Errorf("scanDocument(%q) = %v, want %v", name, ok, tt.valid)
		}
	}
}

// TestScanDocumentStrings moves every kind of byte a string scan stops at
// through the first positions of a string, across the word boundaries of
// the fast path.
func TestScanDocumentStrings(t *testing.T) {
	specials := []string{`"`, `\\`, `\"`, `\u0041`, "\x1f", "\x7f", "é", "\u2028", "\U0001F600", "\xff", "\xe2\x82", `\x`}
	for _, sp := range specials {
		for pos := range 20 {
			for _, tail := range []string{"", "abcdefghijklmnop"} {
				in := `"` + strings.Repeat("a", pos) + sp + tail + `"`
				want := json.Valid([]byte(in)) && utf8.Valid([]byte(in))
				if _, ok := scanDocument([]byte(in), 0); ok != want {
					t.Errorf("scanDocument(%q) = %v, want %v", in, ok, want)
				}
				if !want {
					continue
				}
				doc := document{data: []byte(in)}
				if end, _ := doc.valueEnd(0); end != len(in) {
					t.Errorf("valueEnd(%q) = %d, want %d", in, end, len(in))
				}
			}
		}
	}
}

// TestDocumentContainers checks the extents scanDocument notes, which the
// readers trust to jump over values.
func TestDocumentContainers(t *testing.T) {
	in := ` {"events": [ {"type":"a","data":{"k" : [1, {"x":[]}]}}, {"data":[]}, [] ]} `
	doc, ok := scanDocument([]byte(in), 4)
	if !ok {
		t.Fatal("a valid document was refused")
	}
	// Every array and object at most 4 deep, in the order they open.
	want := []struct {
		value  string
		spaced bool
	}{
		{`{"events": [ {"type":"a","data":{"k" : [1, {"x":[]}]}}, {"data":[]}, [] ]}`, true},
		{`[ {"type":"a","data":{"k" : [1, {"x":[]}]}}, {"data":[]}, [] ]`, true},
		{`{"type":"a","data":{"k" : [1, {"x":[]}]}}`, true},
		{`{"k" : [1, {"x":[]}]}`, true},
		{`{"data":[]}`, false},
		{`[]`, false},
		{`[]`, false},
	}
	if len(doc.containers) != len(want) {
		t.Fatalf("noted %d containers, want %d: %+v", len(doc.containers), len(want), doc.containers)
	}
	from := 0
	for i, c := range doc.containers {
		start := from + strings.Index(in[from:], want[i].value)
		from = start + 1
		if c.start != start || c.end != start+len(want[i].value) || c.spaced != want[i].spaced {
			t.Errorf("container %d = %+v, want start %d, end %d, spaced %v", i, c, start, start+len(want[i].value), want[i].spaced)
		}
		// What scanning finds, for the containers too deep to be noted.
		if end, spaced := containerEnd(doc.data, c.start); end != c.end || spaced != c.spaced {
			t.Errorf("containerEnd(%d) = %d, %v, want %d, %v", c.start, end, spaced, c.end, c.spaced)
		}
	}
	if !doc.spaced {
		t.Error("whitespace around the value was not noted")
	}
}

func TestObjectMembers(t *testing.T) {
	var many strings.Builder
	many.WriteString(`{`)
	for i := range 40 {
		fmt.Fprintf(&many, `"f%d":%d,`, i, i)
	}
	tests := []struct {
		name string
		in   string
		want []member
		err  string
	}{
		{name: "empty", in: `{}`},
		{name: "empty with space", in: "{ \n }"},
		{name: "values kept as sent", in: `{"a" : { "b" : 1 } , "c":"x\"y" ,"d":-1.5e3,"e":null}`, want: []member{
			{name: "a", value: json.RawMessage(`{ "b" : 1 }`), at: 7, spaced: true},
			{name: "c", value: json.RawMessage(`"x\"y"`), at: 25},
			{name: "d", value: json.RawMessage(`-1.5e3`), at: 37},
			{name: "e", value: json.RawMessage(`null`), at: 48},
		}},
		{name: "escaped names", in: `{"\u0069d":1,"a\"b":2}`, want: []member{
			{name: "id", value: json.RawMessage(`1`), at: 11},
			{name: `a"b`, value: json.RawMessage(`2`), at: 20},
		}},
		{name: "duplicate", in: `{"a":1,"b":2,"a":3}`, err: `duplicate field "a"`},
		{name: "duplicate of an escaped name", in: `{"type":1,"typ\u0065":2}`, err: `duplicate field "type"`},
		{name: "duplicate in a large object", in: many.String() + `"f3":0}`, err: `duplicate field "f3"`},
		{name: "duplicate of a late name in a large object", in: many.String() + `"f39":0}`, err: `duplicate field "f39"`},
		{name: "not an object", in: `[1]`, err: "body must be a JSON object, found an array"},
		{name: "number out of float64 range", in: `1e999`, err: "body must be a JSON object, found a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readObject([]byte(tt.in), "body")
			if errString(err) != tt.err {
				t.Fatalf("error = %q, want %q", errString(err), tt.err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(member{})); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
			for _, m := range got {
				if cap(m.value) != len(m.value) {
					t.Errorf("member %s: capacity %d reaches past the value", m.name, cap(m.value))
				}
			}
		})
	}
	large, err := readObject([]byte(many.String()+`"last":0}`), "body")
	if err != nil || len(large) != 41 || large[40].name != "last" {
		t.Errorf("large object: %d members, %v", len(large), err)
	}
}

// TestDecodeErrors covers the errors of whole requests and of single
// events that depend on the body's one check.
func TestDecodeErrors(t *testing.T) {
	ce := `"specversion":"1.0","id":"1","source":"s","type":"a"`
	tests := []struct {
		name   string
		decode string // native, structured, nativeBatch or structuredBatch
		body   string
		err    string   // of the request
		items  []string // errors of the events, "" for accepted ones
	}{
		{name: "invalid UTF-8 in an event's data", decode: "nativeBatch",
			body: "{\"events\":[{\"type\":\"a\"},{\"type\":\"a\",\"data\":{\"s\":\"\xff\"}}]}", err: "body is not valid UTF-8"},
		{name: "invalid UTF-8 in an event's type", decode: "nativeBatch",
			body: "{\"events\":[{\"type\":\"a\xff\"}]}", err: "body is not valid UTF-8"},
		{name: "invalid UTF-8 in a field name", decode: "nativeBatch",
			body: "{\"events\":[{\"ty\xffpe\":\"a\"}]}", err: "body is not valid UTF-8"},
		{name: "UTF-8 surrogate in CloudEvents data", decode: "structuredBatch",
			body: "[{" + ce + ",\"data\":\"\xed\xa0\x80\"}]", err: "body is not valid UTF-8"},
		{name: "invalid UTF-8 and malformed", decode: "native",
			body: "{\"type\":\"\xff\"", err: "body is not valid UTF-8"},
		{name: "trailing garbage after a batch", decode: "nativeBatch",
			body: `{"events":[{"type":"a"}]} x`, err: "malformed JSON at byte 27: invalid character 'x' after top-level value"},
		{name: "trailing brace after a batch", decode: "nativeBatch",
			body: `{"events":[{"type":"a"}]}}`, err: "malformed JSON at byte 26: invalid character '}' after top-level value"},
		{name: "trailing garbage after a CloudEvents batch", decode: "structuredBatch",
			body: `[{` + ce + `}] x`, err: "malformed JSON at byte 58: invalid character 'x' after top-level value"},
		{name: "trailing garbage after an event", decode: "structured",
			body: `{"type":"a"} x`, err: "malformed JSON at byte 14: invalid character 'x' after top-level value"},
		{name: "trailing whitespace is fine", decode: "native", body: "{\"type\":\"a\"}\n\n", items: []string{""}},
		{name: "control character in a string of data", decode: "nativeBatch",
			body: "{\"events\":[{\"type\":\"a\",\"data\":{\"s\":\"a\tb\"}}]}", err: `malformed JSON at byte 38: invalid character '\t' in string literal`},
		{name: "NUL between events", decode: "nativeBatch",
			body: "{\"events\":[{\"type\":\"a\"}\x00]}", err: `malformed JSON at byte 24: invalid character '\x00' after array element`},
		{name: "data nested as deep as allowed", decode: "nativeBatch",
			body: `{"events":[{"type":"a","data":` + nested(maxNestingDepth-3) + `}]}`, items: []string{""}},
		{name: "data nested too deep", decode: "nativeBatch",
			body: `{"events":[{"type":"a","data":` + nested(maxNestingDepth-2) + `}]}`, err: "malformed JSON at byte 10028: invalid character '[' exceeded max depth"},
		{name: "CloudEvents data nested too deep", decode: "structuredBatch",
			body: `[{` + ce + `,"data":` + nested(maxNestingDepth-1) + `}]`, err: "malformed JSON at byte 10061: invalid character '[' exceeded max depth"},
		{name: "single event data nested too deep", decode: "native",
			body: `{"type":"a","data":` + nested(maxNestingDepth) + `}`, err: "malformed JSON at byte 10019: invalid character '[' exceeded max depth"},
		{name: "duplicate field in an event", decode: "nativeBatch",
			body: `{"events":[{"type":"a"},{"type":"a","type":"b"}]}`, items: []string{"", `events[1]: duplicate field "type"`}},
		{name: "duplicate field spelt with an escape", decode: "nativeBatch",
			body: `{"events":[{"typ\u0065":"a","type":"b"}]}`, items: []string{`events[0]: duplicate field "type"`}},
		{name: "duplicate field comes before unknown fields", decode: "nativeBatch",
			body:  `{"events":[{"type":"a","f1":1,"f2":1,"f3":1,"f4":1,"f5":1,"f6":1,"f7":1,"f8":1,"f9":1,"f10":1,"f11":1,"f12":1,"f13":1,"f14":1,"f15":1,"f16":1,"f17":1,"f3":2}]}`,
			items: []string{`events[0]: duplicate field "f3"`}},
		{name: "duplicate events", decode: "nativeBatch", body: `{"events":[{"type":"a"}],"events":[]}`, err: `duplicate field "events"`},
		{name: "duplicate CloudEvents attribute", decode: "structuredBatch",
			body: `[{"specversion":"1.0","id":"1","id":"2","source":"s","type":"a"}]`, items: []string{`[0]: duplicate field "id"`}},
		{name: "duplicate names in data are data", decode: "nativeBatch",
			body: `{"events":[{"type":"a","data":{"k":1,"k":2}}]}`, items: []string{""}},
		{name: "number out of range as a type", decode: "nativeBatch",
			body: `{"events":[{"type":1e999}]}`, items: []string{"events[0].type: must be a string, found a number"}},
		{name: "number out of range as a body", decode: "native", body: `1e999`, err: "body must be a JSON object, found a number"},
		{name: "number as a batch", decode: "structuredBatch", body: ` 7 `, err: "body must be a JSON array, found a number"},
		{name: "events not a list", decode: "nativeBatch", body: `{"events":"x"}`, err: "events must be a JSON array, found a string"},
		{name: "event not an object", decode: "structuredBatch", body: `[{` + ce + `}, true]`, items: []string{"", "[1] must be a JSON object, found a boolean"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var items []item
			var err error
			switch tt.decode {
			case "native", "structured":
				decode := decodeNative
				if tt.decode == "structured" {
					decode = decodeStructured
				}
				var d draft
				d, err = decode([]byte(tt.body), "")
				if err == nil {
					items = []item{{draft: d}}
				}
			case "nativeBatch":
				items, err = decodeNativeBatch([]byte(tt.body), 5)
			case "structuredBatch":
				items, err = decodeStructuredBatch([]byte(tt.body), 5)
			default:
				t.Fatalf("no decoder %q", tt.decode)
			}
			if errString(err) != tt.err {
				t.Fatalf("error = %q, want %q", errString(err), tt.err)
			}
			var got []string
			for _, it := range items {
				got = append(got, errString(it.err))
			}
			if diff := cmp.Diff(tt.items, got); diff != "" {
				t.Errorf("event errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStoredData checks that an event's data is stored as json.Compact
// writes it, whichever way the event arrives, and that the stored bytes
// cannot be changed through the request body's spare capacity.
func TestStoredData(t *testing.T) {
	datas := []string{
		`1`,
		`"s"`,
		`null`,
		`{"a":[1,2,{"b":"c"}],"d":-1.5e+3,"e":true}`,
		`{ "a" : [ 1 , 2 ] }`,
		// One space each, in every place one can be.
		`{ "a":1}`, `{"a" :1}`, `{"a": 1}`, `{"a":1 }`, `{"a":1, "b":2}`, `{"a":1 ,"b":2}`,
		`[ 1]`, `[1 ]`, `[1, 2]`, `[1 ,2]`, `[{} ]`, `[[] ]`,
		"{\n\t\"a\": [\r\n\t\t1,\n\t\t2\n\t]\n}",
		`"spaces   inside a string stay"`,
		`{"k":"a b\tc","l":" "}`,
		`{"q":"\" } ] ,","bs":"\\","both":"\\\" x"}`,
		`{ "q" : "\" } ] , " , "bs" : "\\ " }`,
		`["\u00e9", "é", "\u2028", "\ud800"]`,
		`[ ]`,
		`{ }`,
		`[[[ [ ] ]]]`,
		`"` + strings.Repeat("x", 300) + `"`,
	}
	ce := `"specversion":"1.0","id":"1","source":"s","type":"a"`
	binaryHeader := http.Header{}
	for _, kv := range [][2]string{{"ce-specversion", "1.0"}, {"ce-id", "1"}, {"ce-source", "s"}, {"ce-type", "a"}} {
		binaryHeader.Set(kv[0], kv[1])
	}
	for _, data := range datas {
		var want bytes.Buffer
		if err := json.Compact(&want, []byte(data)); err != nil {
			t.Fatalf("compacting %q: %v", data, err)
		}
		decoders := map[string]func(body []byte) (draft, error){
			"native": func(body []byte) (draft, error) { return decodeNative(body, "") },
			"native with spaces": func(body []byte) (draft, error) {
				return decodeNative(append(append([]byte(` { "type" : "a" , "data" : `), body...), " } "...), "")
			},
			"structured": func(body []byte) (draft, error) { return decodeStructured(body, "") },
			"binary":     func(body []byte) (draft, error) { return decodeBinary(binaryHeader, body) },
			"binary with spaces around": func(body []byte) (draft, error) {
				return decodeBinary(binaryHeader, append(append([]byte("\n "), body...), " \n"...))
			},
			"native batch": func(body []byte) (draft, error) {
				return batchDraft(decodeNativeBatch(body, 5))
			},
			"CloudEvents batch": func(body []byte) (draft, error) {
				return batchDraft(decodeStructuredBatch(body, 5))
			},
		}
		bodies := map[string]string{
			"native":                    `{"type":"a","data":` + data + `}`,
			"native with spaces":        data,
			"structured":                `{` + ce + `,"data":` + data + `}`,
			"binary":                    data,
			"binary with spaces around": data,
			"native batch":              `{"events":[{"type":"a"},{"type":"a","data":` + data + `},{"type":"a"}]}`,
			"CloudEvents batch":         `[{` + ce + `},{` + ce + `,"data":` + data + `},{` + ce + `}]`,
		}
		for name, decode := range decoders {
			body := []byte(bodies[name])
			d, err := decode(body)
			if err != nil {
				t.Errorf("%s %q: %v", name, data, err)
				continue
			}
			if !bytes.Equal(d.Data, want.Bytes()) {
				t.Errorf("%s %q: stored %q, want %q", name, data, d.Data, want.Bytes())
			}
			if cap(d.Data) != len(d.Data) {
				t.Errorf("%s %q: capacity %d reaches past the data", name, data, cap(d.Data))
			}
		}
	}
}

// batchDraft is the second event of a batch of three.
func batchDraft(items []item, err error) (draft, error) {
	if err != nil {
		return draft{}, err
	}
	if len(items) != 3 {
		return draft{}, fmt.Errorf("decoded %d events, want 3", len(items))
	}
	return items[1].draft, items[1].err
}

// FuzzScanDocument checks the one validating pass and what relies on it
// against encoding/json: the same documents are accepted, compaction gives
// the same bytes, and the noted extents of containers are right.
func FuzzScanDocument(f *testing.F) {
	for _, s := range []string{
		`{"events":[{"type":"a","data":{ "k" : [1, "x y"] }}]}`,
		`[{"specversion":"1.0","data":[ "\"", "\\" ]}]`,
		`{"a" :1}`,
		` "\u00e9" `,
		`[1,2.5e-3,true,false,null]`,
		nested(40),
		"\"\xed\xa0\x80\"",
		`{"a":1,}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		doc, ok := scanDocument(in, 3)
		if want := json.Valid(in) && utf8.Valid(in); ok != want {
			t.Fatalf("scanDocument = %v, encoding/json and utf8.Valid say %v", ok, want)
		}
		if !ok {
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, in); err != nil {
			t.Fatalf("json.Compact: %v", err)
		}
		if got := compactValue(in, doc.spaced); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("compactValue = %q, json.Compact %q", got, want.Bytes())
		}
		if spaced := !bytes.Equal(in, want.Bytes()); doc.spaced != spaced {
			t.Fatalf("spaced = %v, want %v", doc.spaced, spaced)
		}
		for _, c := range doc.containers {
			if end, spaced := containerEnd(in, c.start); end != c.end || spaced != c.spaced {
				t.Fatalf("container at %d: noted end %d, spaced %v; scanned %d, %v", c.start, c.end, c.spaced, end, spaced)
			}
		}
		if end, _ := doc.valueEnd(doc.start()); skipSpace(in, end) != len(in) {
			t.Fatalf("valueEnd of the document = %d, want the end of %q", end, in)
		}
	})
}
