package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hookline/hookline/internal/eventtype"
)

// The decoders below are pure: bytes and headers in, drafts or errors out.
// Every error they return is a client mistake (400) whose message names the
// offending field, so the handler can pass it on verbatim.

// MaxIDLength is the longest event id accepted.
const MaxIDLength = 128

// maxEcho bounds how much of a client-supplied string is repeated in an
// error message, so that a megabyte of garbage is not sent back.
const maxEcho = 64

// draft is a decoded, validated event that still lacks what the handler
// fills in: an id when the producer gave none and a time when it gave none.
type draft struct {
	ID   string // empty: generate one
	Type string
	Time time.Time // zero: now
	Data json.RawMessage
}

// item is one element of a batch: either a draft or the reason it was
// refused.
type item struct {
	draft draft
	err   error
}

// member is one top-level field of a JSON object, in document order.
type member struct {
	name  string
	value json.RawMessage
}

// malformedError describes a body that is not valid JSON.
func malformedError(err error, offset int64) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		offset = syn.Offset
	}
	msg := err.Error()
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		msg = "unexpected end of JSON input"
	}
	return fmt.Errorf("malformed JSON at byte %d: %s", offset, msg)
}

// checkSyntax reports where data stops being one valid JSON value. It runs
// before the token-level reading below because the whole-document scan
// gives the byte position of a mistake, counted from the start of data,
// which the streaming decoder does not.
func checkSyntax(data []byte) error {
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return malformedError(err, int64(len(data)))
	}
	return nil
}

// openJSON checks that data is valid UTF-8 and JSON and opens it, having
// read the opening delimiter of the expected kind.
func openJSON(data []byte, what string, open json.Delim, kind string) (*json.Decoder, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%s is not valid UTF-8", what)
	}
	if err := checkSyntax(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, malformedError(err, dec.InputOffset())
	}
	if d, ok := tok.(json.Delim); !ok || d != open {
		return nil, fmt.Errorf("%s must be a JSON %s, found %s", what, kind, jsonKind(tok))
	}
	return dec, nil
}

// readObject splits a JSON object into its members. Unlike decoding into a
// map or struct it refuses duplicate names, which different JSON parsers
// resolve differently, and it keeps the exact bytes of every value.
func readObject(data []byte, what string) ([]member, error) {
	dec, err := openJSON(data, what, '{', "object")
	if err != nil {
		return nil, err
	}
	var members []member
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformedError(err, dec.InputOffset())
		}
		name := tok.(string) // the decoder only yields strings as object keys
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, malformedError(err, dec.InputOffset())
		}
		if seen[name] {
			return nil, fmt.Errorf("duplicate field %s", echo(name))
		}
		seen[name] = true
		members = append(members, member{name: name, value: value})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, malformedError(err, dec.InputOffset())
	}
	if err := expectEOF(dec); err != nil {
		return nil, err
	}
	return members, nil
}

// readArray splits a JSON array into its elements.
func readArray(data []byte, what string) ([]json.RawMessage, error) {
	dec, err := openJSON(data, what, '[', "array")
	if err != nil {
		return nil, err
	}
	var elems []json.RawMessage
	for dec.More() {
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, malformedError(err, dec.InputOffset())
		}
		elems = append(elems, value)
	}
	if _, err := dec.Token(); err != nil {
		return nil, malformedError(err, dec.InputOffset())
	}
	if err := expectEOF(dec); err != nil {
		return nil, err
	}
	return elems, nil
}

func expectEOF(dec *json.Decoder) error {
	off := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("malformed JSON at byte %d: unexpected data after the top-level value", off+1)
	}
	return nil
}

// jsonKind names the JSON type that starts with tok, for error messages.
func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	default:
		return "null"
	}
}

// kindOf names the JSON type of a raw value.
func kindOf(raw json.RawMessage) string {
	tok, err := json.NewDecoder(bytes.NewReader(raw)).Token()
	if err != nil {
		return "invalid JSON"
	}
	return jsonKind(tok)
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// stringField decodes a JSON string value.
func stringField(path, name string, raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s%s: must be a string, found %s", path, name, kindOf(raw))
	}
	return s, nil
}

// compactData validates and compacts an event's data. Absent data is JSON
// null so that every stored event has a JSON body.
func compactData(path string, raw []byte) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage("null"), nil
	}
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("%sdata: not valid UTF-8", path)
	}
	if err := checkSyntax(raw); err != nil {
		return nil, fmt.Errorf("%sdata: %w", path, err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("%sdata: %w", path, malformedError(err, 0))
	}
	return buf.Bytes(), nil
}

// validateID reports why id is not an acceptable event id. Ids become part
// of a NATS message id and an HTTP header, hence the narrow alphabet.
func validateID(path, id string) error {
	if id == "" {
		return fmt.Errorf("%sid: must not be empty", path)
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("%sid: is %d characters long, maximum is %d", path, len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if !validIDByte(id[i]) {
			r, _ := utf8.DecodeRuneInString(id[i:])
			return fmt.Errorf("%sid: %s: invalid character %q at position %d, allowed are A-Z a-z 0-9 and . _ ~ : -",
				path, echo(id), r, i+1)
		}
	}
	return nil
}

func validIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '~' || c == ':' || c == '-'
}

// validateType reports why t is not an acceptable event type.
func validateType(path, t string) error {
	if t == "" {
		return fmt.Errorf("%stype: required", path)
	}
	err := eventtype.ValidateType(t)
	if err == nil {
		return nil
	}
	// eventtype names the type itself ("event type \"a..b\": ..."); the
	// field name leads here, so that prefix is restated as a sentence.
	msg := err.Error()
	if prefix := fmt.Sprintf("event type %q: ", t); strings.HasPrefix(msg, prefix) {
		return fmt.Errorf("%stype: %q is not a valid event type: %s", path, t, strings.TrimPrefix(msg, prefix))
	}
	return fmt.Errorf("%stype: not a valid event type: %s", path, msg)
}

// echo quotes a client-supplied string for an error message, shortened.
func echo(s string) string {
	if len(s) <= maxEcho {
		return fmt.Sprintf("%q", s)
	}
	cut := maxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q...", s[:cut])
}

// decodeNative decodes {"id"?, "type", "data"?}. path prefixes field names
// in errors ("" or "events[3].").
func decodeNative(data []byte, path string) (draft, error) {
	what := "body"
	if path != "" {
		what = strings.TrimSuffix(path, ".")
	}
	members, err := readObject(data, what)
	if err != nil {
		return draft{}, prefixed(path, err)
	}
	var d draft
	var typeSeen, idSeen bool
	var rawData json.RawMessage
	for _, m := range members {
		switch m.name {
		case "id":
			// null is accepted as "no id": serialisers commonly write
			// absent optional fields that way.
			if isNull(m.value) {
				continue
			}
			if d.ID, err = stringField(path, "id", m.value); err != nil {
				return draft{}, err
			}
			idSeen = true
		case "type":
			if isNull(m.value) {
				continue
			}
			if d.Type, err = stringField(path, "type", m.value); err != nil {
				return draft{}, err
			}
			typeSeen = true
		case "data":
			rawData = m.value
		default:
			return draft{}, prefixed(path, fmt.Errorf("unknown field %s, accepted fields are id, type and data", echo(m.name)))
		}
	}
	if idSeen {
		if err := validateID(path, d.ID); err != nil {
			return draft{}, err
		}
	}
	if !typeSeen {
		return draft{}, fmt.Errorf("%stype: required", path)
	}
	if err := validateType(path, d.Type); err != nil {
		return draft{}, err
	}
	if d.Data, err = compactData(path, rawData); err != nil {
		return draft{}, err
	}
	return d, nil
}

// prefixed adds a batch element's path to a whole-value error such as
// "malformed JSON" that does not already name a field.
func prefixed(path string, err error) error {
	if path == "" || strings.HasPrefix(err.Error(), strings.TrimSuffix(path, ".")) {
		return err
	}
	return fmt.Errorf("%s: %w", strings.TrimSuffix(path, "."), err)
}

// CloudEvents attribute names that are part of the 1.0 specification.
// Anything else is an extension attribute, which is accepted and ignored.
const (
	ceSpecVersion     = "specversion"
	ceID              = "id"
	ceSource          = "source"
	ceType            = "type"
	ceTime            = "time"
	ceDataContentType = "datacontenttype"
	ceData            = "data"
	ceDataBase64      = "data_base64"
)

// ceRequired lists the required attributes in the order they are reported.
var ceRequired = []string{ceSpecVersion, ceID, ceSource, ceType}

// ceAttrs holds the attributes Hookline uses, from either CloudEvents mode.
type ceAttrs struct {
	specVersion, id, source, typ, time, dataContentType string
	present                                             map[string]bool
}

// toDraft validates the attributes shared by the structured and binary
// modes. name maps an attribute to the field or header to blame.
func (a ceAttrs) toDraft(name func(string) string) (draft, error) {
	for _, attr := range ceRequired {
		if !a.present[attr] {
			return draft{}, fmt.Errorf("%s: required", name(attr))
		}
	}
	if a.specVersion != "1.0" {
		return draft{}, fmt.Errorf("%s: must be \"1.0\", found %s", name(ceSpecVersion), echo(a.specVersion))
	}
	if err := validateID("", a.id); err != nil {
		return draft{}, fmt.Errorf("%s%s", name(ceID), strings.TrimPrefix(err.Error(), "id"))
	}
	if a.source == "" {
		return draft{}, fmt.Errorf("%s: must not be empty", name(ceSource))
	}
	if err := validateType("", a.typ); err != nil {
		return draft{}, fmt.Errorf("%s%s", name(ceType), strings.TrimPrefix(err.Error(), "type"))
	}
	d := draft{ID: a.id, Type: a.typ}
	if a.present[ceTime] {
		t, err := time.Parse(time.RFC3339Nano, a.time)
		if err != nil {
			return draft{}, fmt.Errorf("%s: %s is not an RFC 3339 timestamp", name(ceTime), echo(a.time))
		}
		d.Time = t.UTC()
	}
	if a.present[ceDataContentType] && !isJSONMediaType(a.dataContentType) {
		return draft{}, fmt.Errorf("%s: %s is not supported, only JSON data (application/json or */*+json) is",
			name(ceDataContentType), echo(a.dataContentType))
	}
	return d, nil
}

// isJSONMediaType reports whether a media type denotes JSON.
func isJSONMediaType(v string) bool {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json") && strings.Count(mt, "/") == 1
}

// decodeStructured decodes a CloudEvents 1.0 event in structured mode
// (JSON event format). path prefixes field names in errors.
func decodeStructured(data []byte, path string) (draft, error) {
	what := "body"
	if path != "" {
		what = strings.TrimSuffix(path, ".")
	}
	members, err := readObject(data, what)
	if err != nil {
		return draft{}, prefixed(path, err)
	}
	a := ceAttrs{present: map[string]bool{}}
	var rawData json.RawMessage
	for _, m := range members {
		var dst *string
		switch m.name {
		case ceSpecVersion:
			dst = &a.specVersion
		case ceID:
			dst = &a.id
		case ceSource:
			dst = &a.source
		case ceType:
			dst = &a.typ
		case ceTime:
			dst = &a.time
		case ceDataContentType:
			dst = &a.dataContentType
		case ceData:
			rawData = m.value
			continue
		case ceDataBase64:
			return draft{}, fmt.Errorf("%sdata_base64: not supported, only JSON data is; send the payload as \"data\" with a JSON datacontenttype", path)
		default:
			continue
		}
		// The JSON event format lets an attribute be null, meaning absent.
		if isNull(m.value) {
			continue
		}
		if *dst, err = stringField(path, m.name, m.value); err != nil {
			return draft{}, err
		}
		a.present[m.name] = true
	}
	d, err := a.toDraft(func(attr string) string { return path + attr })
	if err != nil {
		return draft{}, err
	}
	if d.Data, err = compactData(path, rawData); err != nil {
		return draft{}, err
	}
	return d, nil
}

// binaryHeader is the HTTP header carrying a CloudEvents attribute in binary
// mode.
func binaryHeader(attr string) string { return "ce-" + attr }

// decodeBinary decodes a CloudEvents 1.0 event in binary mode: attributes in
// ce-* headers, the body is the data. The caller has checked that the
// content type is JSON, which makes it the datacontenttype.
func decodeBinary(h http.Header, body []byte) (draft, error) {
	a := ceAttrs{present: map[string]bool{}}
	// A slice, not a map, so that the first problem reported is always
	// the same one.
	for _, f := range []struct {
		attr string
		dst  *string
	}{
		{ceSpecVersion, &a.specVersion},
		{ceID, &a.id},
		{ceSource, &a.source},
		{ceType, &a.typ},
		{ceTime, &a.time},
	} {
		attr, dst := f.attr, f.dst
		if vs := h.Values(binaryHeader(attr)); len(vs) > 0 {
			if len(vs) > 1 {
				return draft{}, fmt.Errorf("%s: given %d times, must be given once", binaryHeader(attr), len(vs))
			}
			*dst = vs[0]
			a.present[attr] = true
		}
	}
	d, err := a.toDraft(binaryHeader)
	if err != nil {
		return draft{}, err
	}
	// An empty body is a CloudEvent without data.
	if d.Data, err = compactData("", body); err != nil {
		return draft{}, err
	}
	return d, nil
}

// decodeNativeBatch decodes {"events": [...]} holding at most maxEvents
// native events. An error concerns the whole request; per-event problems are
// in the items.
func decodeNativeBatch(data []byte, maxEvents int) ([]item, error) {
	members, err := readObject(data, "body")
	if err != nil {
		return nil, err
	}
	var rawEvents json.RawMessage
	for _, m := range members {
		if m.name != "events" {
			return nil, fmt.Errorf("unknown field %s, the only accepted field is events", echo(m.name))
		}
		rawEvents = m.value
	}
	if rawEvents == nil || isNull(rawEvents) {
		return nil, errors.New("events: required")
	}
	return decodeList(rawEvents, "events", "events", maxEvents, decodeNative)
}

// decodeStructuredBatch decodes a CloudEvents JSON batch: an array of
// structured events, at most maxEvents.
func decodeStructuredBatch(data []byte, maxEvents int) ([]item, error) {
	return decodeList(data, "body", "", maxEvents, decodeStructured)
}

// decodeList decodes the JSON array data (named what in errors) of at most
// maxEvents events with decode, each event's fields named from path, as in
// "events[3].type".
func decodeList(data []byte, what, path string, maxEvents int, decode func([]byte, string) (draft, error)) ([]item, error) {
	elems, err := readArray(data, what)
	if err != nil {
		return nil, err
	}
	if err := checkBatchSize(what, len(elems), maxEvents); err != nil {
		return nil, err
	}
	items := make([]item, len(elems))
	for i, raw := range elems {
		items[i].draft, items[i].err = decode(raw, fmt.Sprintf("%s[%d].", path, i))
	}
	return items, nil
}

func checkBatchSize(what string, n, maxEvents int) error {
	switch {
	case n == 0:
		return fmt.Errorf("%s: must hold at least one event", what)
	case n > maxEvents:
		return fmt.Errorf("%s: holds %d events, maximum is %d", what, n, maxEvents)
	}
	return nil
}
