package ingest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hookline/hookline/internal/eventid"
	"github.com/hookline/hookline/internal/eventtype"
)

// The decoders below are pure: bytes and headers in, drafts or errors out.
// Every error they return is a client mistake (400) whose message names the
// offending field, so the handler can pass it on verbatim.
//
// A request body is checked once, whole, by scanDocument: JSON syntax and
// UTF-8 in one pass, which also notes where the outer arrays and objects
// end (a batch's list of events, each event, each event's data) and whether
// they hold whitespace. Everything nested in the body is then a slice of a
// valid document and is only split, never checked again: the methods of
// document read the tokens of one level and jump over the values they hold.
// So most bytes of a batch are read once, and an event's data is copied
// only when whitespace must be taken out of it.

// MaxIDLength is the longest event id accepted (internal/eventid).
const MaxIDLength = eventid.MaxLength

// maxEcho bounds how much of a client-supplied string is repeated in an
// error message, so that a megabyte of garbage is not sent back.
const maxEcho = 64

// maxNestingDepth is the deepest nesting of arrays and objects accepted,
// the limit of encoding/json, which checked bodies before scanDocument did:
// the same documents are refused, with the same message.
const maxNestingDepth = 10000

// draft is a decoded, validated event that still lacks what the handler
// fills in: an id when the producer gave none and a time when it gave none.
type draft struct {
	ID   string // empty: generate one
	Type string
	Time time.Time // zero: now
	// Data may share memory with the decoded request body, which must
	// therefore not be modified afterwards.
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
	value json.RawMessage // shares the document's memory, capacity cut to its length
	at    int             // where value starts in the document
	// spaced reports whitespace between the value's tokens, which
	// compaction would remove.
	spaced bool
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

// checkSyntax reports where data stops being one valid JSON value, counted
// in bytes from the start of data. It runs only once scanDocument has
// refused data, to explain why: errors are rare, and encoding/json's
// messages are the ones clients have always been given.
func checkSyntax(data []byte) error {
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return malformedError(err, int64(len(data)))
	}
	return nil
}

// document is a checked JSON document with the extent of its outer arrays
// and objects, so that reading a value of it skips the values it holds
// without reading them again.
type document struct {
	data []byte
	// containers are the arrays and objects nested at most the depth
	// asked of scanDocument, in the order they open, hence by start.
	containers []container
	// spaced reports whitespace between tokens or around the value.
	spaced bool
	last   int // index of the container last looked up
}

// container is the extent of an array or object of a document.
type container struct {
	start, end int // of the opening delimiter; after the closing one
	spaced     bool
}

// start is the index of the document's value.
func (d *document) start() int { return skipSpace(d.data, 0) }

// checkDocument checks that data is one JSON value in valid UTF-8; what
// names data in errors. The document notes the extent of the arrays and
// objects nested at most indexDepth deep (the document's own value is at
// depth 1), which are those that will be read.
func checkDocument(data []byte, what string, indexDepth int) (document, error) {
	if doc, ok := scanDocument(data, indexDepth); ok {
		return doc, nil
	}
	// The order of the checks scanDocument replaced, which decides the
	// message when both fail.
	if !utf8.Valid(data) {
		return document{}, fmt.Errorf("%s is not valid UTF-8", what)
	}
	return document{}, syntaxError(data)
}

// syntaxError explains why data, which is valid UTF-8, is not one JSON
// value.
func syntaxError(data []byte) error {
	if err := checkSyntax(data); err != nil {
		return err
	}
	// scanDocument and encoding/json disagree, which the tests rule out;
	// refusing is the safe side.
	return errors.New("malformed JSON")
}

// frame is a container being scanned.
type frame struct {
	index  int // in the document's containers; -1 when too deep to be noted
	spaces int // runs of whitespace seen before it opened
}

// isSpace says whether c is JSON whitespace.

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t'
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(data []byte, i int) int {
	if i < len(data) && data[i] > ' ' { // the usual case, decided early
		return i
	}
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	return i
}

// plainStringByte marks the bytes that stand for themselves in a JSON
// string: printable ASCII but the quote and the backslash.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// stringEnd returns the index after the string starting at data[i], a
// value of a checked document.
func stringEnd(data []byte, i int) int {
	j := i + 1
	for {
		j += bytes.IndexByte(data[j:], '"')
		// A quote is escaped when an odd number of backslashes precede
		// it. The opening quote stops the count.
		k := j
		for data[k-1] == '\\' {
			k--
		}
		if (j-k)%2 == 0 {
			return j + 1
		}
		j++
	}
}

// valueEnd returns the index after the value starting at i and whether
// whitespace separates its tokens.
func (d *document) valueEnd(i int) (end int, spaced bool) {
	data := d.data
	switch data[i] {
	case '"':
		return stringEnd(data, i), false
	case '{', '[':
		if c, ok := d.container(i); ok {
			return c.end, c.spaced
		}
		return containerEnd(data, i)
	default: // a number or a literal, which ends at the next delimiter
		for i < len(data) && data[i] > ' ' && data[i] != ',' && data[i] != ']' && data[i] != '}' {
			i++
		}
		return i, false
	}
}

// container returns the noted extent of the container starting at start.
func (d *document) container(start int) (container, bool) {
	// Values are mostly read in document order, so the container after
	// the one last found is the likely one.
	if n := d.last + 1; n < len(d.containers) && d.containers[n].start == start {
		d.last = n
		return d.containers[n], true
	}
	n, found := slices.BinarySearchFunc(d.containers, start, func(c container, start int) int {
		return cmp.Compare(c.start, start)
	})
	if !found {
		return container{}, false
	}
	d.last = n
	return d.containers[n], true
}

// containerEnd returns the index after the array or object starting at
// data[i], a value of a checked document too deep to be noted, and whether
// whitespace separates its tokens.
func containerEnd(data []byte, i int) (end int, spaced bool) {
	depth := 0
	for {
		switch data[i] {
		case '"':
			i = stringEnd(data, i)
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1, spaced
			}
		case ' ', '\n', '\r', '\t':
			spaced = true
		}
		i++
	}
}

// kindOf names the JSON type of raw, a value of a checked document.
func kindOf(raw []byte) string {
	i := skipSpace(raw, 0)
	if i == len(raw) {
		return "invalid JSON"
	}
	switch c := raw[i]; {
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || isDigit(c):
		return "a number"
	default:
		return "invalid JSON"
	}
}

// open returns the index after the opening delimiter of the value at i,
// expected to be of kind ("object" or "array"); what names the value in
// errors.
func (d *document) open(i int, what string, delim byte, kind string) (int, error) {
	if d.data[i] != delim {
		return 0, fmt.Errorf("%s must be a JSON %s, found %s", what, kind, kindOf(d.data[i:]))
	}
	return skipSpace(d.data, i+1), nil
}

// readObject checks that data is a JSON object in valid UTF-8 and splits
// it into its members; what names data in errors.
func readObject(data []byte, what string) ([]member, error) {
	doc, err := checkDocument(data, what, 2)
	if err != nil {
		return nil, err
	}
	return doc.objectMembers(nil, doc.start(), what)
}

// objectMembers splits the object at i into its members, appended to dst;
// what names the object in errors. Unlike decoding into a map or struct it
// refuses duplicate names, which different JSON parsers resolve
// differently, and it keeps the exact bytes of every value.
func (d *document) objectMembers(dst []member, i int, what string) ([]member, error) {
	data := d.data
	i, err := d.open(i, what, '{', "object")
	if err != nil {
		return nil, err
	}
	first := len(dst)
	var seen map[string]bool // once the object is too large to search
	if data[i] == '}' {
		return dst, nil
	}
	for {
		end := stringEnd(data, i)
		name := keyName(data[i:end])
		i = skipSpace(data, skipSpace(data, end)+1) // past the colon
		end, spaced := d.valueEnd(i)
		if isDuplicate(dst[first:], &seen, name) {
			return nil, fmt.Errorf("duplicate field %s", echo(name))
		}
		dst = append(dst, member{name: name, value: data[i:end:end], at: i, spaced: spaced})
		i = skipSpace(data, end)
		if data[i] == '}' {
			return dst, nil
		}
		i = skipSpace(data, i+1) // past the comma
	}
}

// isDuplicate reports whether name is among the names of members, and
// adds it. Objects are small, so a search is cheaper than a map, until an
// object is large enough to make the search quadratic.
func isDuplicate(members []member, seen *map[string]bool, name string) bool {
	const searchLimit = 16
	if len(members) < searchLimit {
		for _, m := range members {
			if m.name == name {
				return true
			}
		}
		return false
	}
	if *seen == nil {
		*seen = make(map[string]bool, 2*len(members))
		for _, m := range members {
			(*seen)[m.name] = true
		}
	}
	if (*seen)[name] {
		return true
	}
	(*seen)[name] = true
	return false
}

// keyName decodes the object key raw, a string of a checked document. The
// names this package looks for are returned without allocating.
func keyName(raw []byte) string {
	if bytes.IndexByte(raw, '\\') >= 0 {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			// Unreachable for a checked document.
			return string(raw)
		}
		return s
	}
	switch name := raw[1 : len(raw)-1]; string(name) {
	case "id":
		return "id"
	case "type":
		return "type"
	case "data":
		return "data"
	case "events":
		return "events"
	case ceSpecVersion:
		return ceSpecVersion
	case ceSource:
		return ceSource
	case ceTime:
		return ceTime
	case ceDataContentType:
		return ceDataContentType
	default:
		return string(name)
	}
}

// arrayElements appends to dst the start of every element of the array at
// i; what names the array in errors.
func (d *document) arrayElements(dst []int, i int, what string) ([]int, error) {
	data := d.data
	i, err := d.open(i, what, '[', "array")
	if err != nil {
		return nil, err
	}
	if data[i] == ']' {
		return dst, nil
	}
	for {
		dst = append(dst, i)
		end, _ := d.valueEnd(i)
		i = skipSpace(data, end)
		if data[i] == ']' {
			return dst, nil
		}
		i = skipSpace(data, i+1) // past the comma
	}
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// stringField decodes raw, a value of a checked document, as a string.
// null is the empty string, as encoding/json has it.
func stringField(path, name string, raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	if len(raw) < 2 || raw[0] != '"' {
		return "", fmt.Errorf("%s%s: must be a string, found %s", path, name, kindOf(raw))
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s%s: must be a string, found %s", path, name, kindOf(raw))
	}
	return s, nil
}

// compactData checks and compacts an event's data, raw, not yet checked.
// Absent data is JSON null so that every stored event has a JSON body.
func compactData(path string, raw []byte) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage("null"), nil
	}
	doc, ok := scanDocument(raw, 0)
	if !ok {
		if !utf8.Valid(raw) {
			return nil, fmt.Errorf("%sdata: not valid UTF-8", path)
		}
		return nil, fmt.Errorf("%sdata: %w", path, syntaxError(raw))
	}
	return compactValue(raw, doc.spaced), nil
}

// eventData is the data of an event as stored: raw, the value of a data
// member, compact; JSON null when absent.
func eventData(raw json.RawMessage, spaced bool) json.RawMessage {
	if raw == nil {
		return json.RawMessage("null")
	}
	return compactValue(raw, spaced)
}

// compactValue returns raw, a checked JSON value, without whitespace
// between tokens, the form events are stored in (as json.Compact writes
// it): raw itself unless spaced. The result has no spare capacity, so that
// appending to it cannot write over the rest of a request body.
func compactValue(raw []byte, spaced bool) json.RawMessage {
	if spaced {
		raw = appendCompact(make([]byte, 0, len(raw)), raw)
	}
	return raw[:len(raw):len(raw)]
}

// appendCompact appends raw, a checked JSON value, to dst without the
// whitespace between its tokens.
func appendCompact(dst, raw []byte) []byte {
	start := 0 // of the bytes not yet appended
	for i := 0; i < len(raw); {
		switch raw[i] {
		case '"':
			i = stringEnd(raw, i)
		case ' ', '\n', '\r', '\t':
			dst = append(dst, raw[start:i]...)
			i = skipSpace(raw, i)
			start = i
		default:
			i++
		}
	}
	return append(dst, raw[start:]...)
}

// validateID reports why id is not an acceptable event id, by the one rule
// of internal/eventid, with the field's path and the id (shortened) when a
// character is refused.
func validateID(path, id string) error {
	err := eventid.Validate(id)
	if err == nil {
		return nil
	}
	var bad *eventid.InvalidCharError
	if errors.As(err, &bad) {
		return fmt.Errorf("%sid: %s: %w", path, echo(id), err)
	}
	return fmt.Errorf("%sid: %w", path, err)
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

// whatOf names the value at path ("" or "events[3].") in errors.
func whatOf(path string) string {
	if path == "" {
		return "body"
	}
	return strings.TrimSuffix(path, ".")
}

// eventReader decodes the events of a checked document, reusing its
// buffer of members from one event to the next.
type eventReader struct {
	doc     *document
	members []member
}

// decodeNative decodes {"id"?, "type", "data"?}, not yet checked. path
// prefixes field names in errors ("" or "events[3].").
func decodeNative(data []byte, path string) (draft, error) {
	doc, err := checkDocument(data, whatOf(path), 2)
	if err != nil {
		return draft{}, prefixed(path, err)
	}
	r := eventReader{doc: &doc}
	return r.native(doc.start(), path)
}

// native decodes {"id"?, "type", "data"?}, the value at i.
func (r *eventReader) native(i int, path string) (draft, error) {
	members, err := r.doc.objectMembers(r.members[:0], i, whatOf(path))
	if err != nil {
		return draft{}, prefixed(path, err)
	}
	r.members = members
	var d draft
	var typeSeen, idSeen bool
	var rawData json.RawMessage
	var dataSpaced bool
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
			rawData, dataSpaced = m.value, m.spaced
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
	d.Data = eventData(rawData, dataSpaced)
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
	present                                             ceAttrSet
}

// ceAttrSet is a set of the attributes ceAttrs holds.
type ceAttrSet uint8

// ceAttrBit is attr's element of a ceAttrSet.
func ceAttrBit(attr string) ceAttrSet {
	switch attr {
	case ceSpecVersion:
		return 1 << 0
	case ceID:
		return 1 << 1
	case ceSource:
		return 1 << 2
	case ceType:
		return 1 << 3
	case ceTime:
		return 1 << 4
	case ceDataContentType:
		return 1 << 5
	default:
		panic("ingest: no CloudEvents attribute " + attr)
	}
}

func (s *ceAttrSet) add(attr string)     { *s |= ceAttrBit(attr) }
func (s ceAttrSet) has(attr string) bool { return s&ceAttrBit(attr) != 0 }

// toDraft validates the attributes shared by the structured and binary
// modes. name maps an attribute to the field or header to blame.
func (a ceAttrs) toDraft(name func(string) string) (draft, error) {
	for _, attr := range ceRequired {
		if !a.present.has(attr) {
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
	if a.present.has(ceTime) {
		t, err := time.Parse(time.RFC3339Nano, a.time)
		if err != nil {
			return draft{}, fmt.Errorf("%s: %s is not an RFC 3339 timestamp", name(ceTime), echo(a.time))
		}
		d.Time = t.UTC()
	}
	if a.present.has(ceDataContentType) && !isJSONMediaType(a.dataContentType) {
		return draft{}, fmt.Errorf("%s: %s is not supported, only JSON data (application/json or */*+json) is",
			name(ceDataContentType), echo(a.dataContentType))
	}
	return d, nil
}

// isJSONMediaType reports whether a media type denotes JSON.
func isJSONMediaType(v string) bool {
	if v == contentTypeJSON { // the usual value, spared the parse
		return true
	}
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
// (JSON event format), not yet checked. path prefixes field names in
// errors.
func decodeStructured(data []byte, path string) (draft, error) {
	doc, err := checkDocument(data, whatOf(path), 2)
	if err != nil {
		return draft{}, prefixed(path, err)
	}
	r := eventReader{doc: &doc}
	return r.structured(doc.start(), path)
}

// structured decodes a CloudEvents 1.0 event in structured mode, the value
// at i.
func (r *eventReader) structured(i int, path string) (draft, error) {
	members, err := r.doc.objectMembers(r.members[:0], i, whatOf(path))
	if err != nil {
		return draft{}, prefixed(path, err)
	}
	r.members = members
	var a ceAttrs
	var rawData json.RawMessage
	var dataSpaced bool
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
			rawData, dataSpaced = m.value, m.spaced
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
		a.present.add(m.name)
	}
	d, err := a.toDraft(func(attr string) string { return path + attr })
	if err != nil {
		return draft{}, err
	}
	d.Data = eventData(rawData, dataSpaced)
	return d, nil
}

// binaryHeader is the HTTP header carrying a CloudEvents attribute in binary
// mode, as named in errors.
func binaryHeader(attr string) string { return "ce-" + attr }

// binaryHeaders are the attributes read in binary mode with their headers
// in canonical form, the keys of an http.Header. A slice, not a map, so
// that the first problem reported is always the same one.
var binaryHeaders = func() []struct{ attr, key string } {
	var hs []struct{ attr, key string }
	for _, attr := range []string{ceSpecVersion, ceID, ceSource, ceType, ceTime} {
		hs = append(hs, struct{ attr, key string }{attr, http.CanonicalHeaderKey(binaryHeader(attr))})
	}
	return hs
}()

// decodeBinary decodes a CloudEvents 1.0 event in binary mode: attributes in
// ce-* headers, the body is the data. The caller has checked that the
// content type is JSON, which makes it the datacontenttype.
func decodeBinary(h http.Header, body []byte) (draft, error) {
	var a ceAttrs
	for _, f := range binaryHeaders {
		vs := h[f.key]
		if len(vs) == 0 {
			continue
		}
		if len(vs) > 1 {
			return draft{}, fmt.Errorf("%s: given %d times, must be given once", binaryHeader(f.attr), len(vs))
		}
		switch f.attr {
		case ceSpecVersion:
			a.specVersion = vs[0]
		case ceID:
			a.id = vs[0]
		case ceSource:
			a.source = vs[0]
		case ceType:
			a.typ = vs[0]
		case ceTime:
			a.time = vs[0]
		}
		a.present.add(f.attr)
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
	// Depth 4 is an event's data: the body, events, an event, its data.
	doc, err := checkDocument(data, "body", 4)
	if err != nil {
		return nil, err
	}
	members, err := doc.objectMembers(nil, doc.start(), "body")
	if err != nil {
		return nil, err
	}
	var events *member
	for i, m := range members {
		if m.name != "events" {
			return nil, fmt.Errorf("unknown field %s, the only accepted field is events", echo(m.name))
		}
		events = &members[i]
	}
	if events == nil || isNull(events.value) {
		return nil, errors.New("events: required")
	}
	r := eventReader{doc: &doc}
	return r.list(events.at, "events", "events", maxEvents, r.native)
}

// decodeStructuredBatch decodes a CloudEvents JSON batch: an array of
// structured events, at most maxEvents.
func decodeStructuredBatch(data []byte, maxEvents int) ([]item, error) {
	// Depth 3 is an event's data: the body, an event, its data.
	doc, err := checkDocument(data, "body", 3)
	if err != nil {
		return nil, err
	}
	r := eventReader{doc: &doc}
	return r.list(doc.start(), "body", "", maxEvents, r.structured)
}

// list decodes the JSON array at i (named what in errors) of at most
// maxEvents events with decode, each event's fields named from path, as in
// "events[3].type".
func (r *eventReader) list(i int, what, path string, maxEvents int, decode func(int, string) (draft, error)) ([]item, error) {
	elems, err := r.doc.arrayElements(nil, i, what)
	if err != nil {
		return nil, err
	}
	if err := checkBatchSize(what, len(elems), maxEvents); err != nil {
		return nil, err
	}
	items := make([]item, len(elems))
	for n, at := range elems {
		// Decoding is pure, so a refused event is decoded again with
		// its path to name it in the message, which spares formatting
		// a path for every event accepted.
		if items[n].draft, items[n].err = decode(at, ""); items[n].err != nil {
			items[n].draft, items[n].err = decode(at, fmt.Sprintf("%s[%d].", path, n))
		}
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
