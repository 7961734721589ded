package ingest

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// scanDocument reports whether data is exactly one JSON value, as
// encoding/json reads it (RFC 8259, duplicate names allowed, at most
// maxNestingDepth levels of nesting), in valid UTF-8. It is the one pass
// that checks a request body, with the jsontext library; the methods of
// document rely on it. The arrays and objects nested at most indexDepth deep
// are noted in the document, with whether whitespace separates their
// tokens, and so is whether the document holds whitespace at all.
//
// A hand-written scanner did the same about three times faster
// (BenchmarkScanDocument); batch ingest stayed above 0.8 of JetStream alone
// with the library (docs/benchmarks.md), so the library it is.
func scanDocument(data []byte, indexDepth int) (document, bool) {
	doc := document{data: data}
	if indexDepth > 0 {
		doc.containers = make([]container, 0, 8+len(data)/512)
	}
	// encoding/json accepts escaped lone surrogates ("\ud800"), which
	// jsontext refuses unless it also accepts invalid UTF-8; so it does,
	// and raw invalid UTF-8 is refused here instead.
	if !utf8.Valid(data) {
		return doc, false
	}
	dec := jsontextDecoders.Get().(*jsontextReader)
	defer jsontextDecoders.Put(dec)
	dec.r.Reset(data)
	dec.d.Reset(&dec.r, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

	var stackBuf [32]frame
	stack := stackBuf[:0]
	spaces := 0
	prevEnd := 0
	// gap notes whitespace between the previous token and one starting at
	// start; separators (',' and ':') are not whitespace.
	gap := func(start int) {
		for _, c := range data[prevEnd:start] {
			if isSpace(c) {
				spaces++
				return
			}
		}
	}
	for {
		kind := dec.d.PeekKind()
		switch kind {
		case 0:
			return doc, false
		case '{', '[':
			if _, err := dec.d.ReadToken(); err != nil {
				return doc, false
			}
			end := int(dec.d.InputOffset())
			gap(end - 1)
			f := frame{index: -1, spaces: spaces}
			if len(stack) < indexDepth {
				f.index = len(doc.containers)
				doc.containers = append(doc.containers, container{start: end - 1})
			}
			stack = append(stack, f)
			prevEnd = end
		case '}', ']':
			if _, err := dec.d.ReadToken(); err != nil {
				return doc, false
			}
			end := int(dec.d.InputOffset())
			gap(end - 1)
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if f.index >= 0 {
				doc.containers[f.index].end = end
				doc.containers[f.index].spaced = spaces != f.spaces
			}
			prevEnd = end
		default:
			v, err := dec.d.ReadValue()
			if err != nil {
				return doc, false
			}
			end := int(dec.d.InputOffset())
			gap(end - len(v))
			prevEnd = end
		}
		if len(stack) == 0 {
			// One value only: what follows may be whitespace alone.
			if _, err := dec.d.ReadToken(); !errors.Is(err, io.EOF) {
				return doc, false
			}
			for _, c := range data[prevEnd:] {
				if isSpace(c) {
					spaces++
					break
				}
			}
			doc.spaced = spaces > 0
			return doc, true
		}
	}
}

// jsontextReader is a decoder with the reader it reads, reused.
type jsontextReader struct {
	r bytes.Reader
	d jsontext.Decoder
}

var jsontextDecoders = sync.Pool{New: func() any { return new(jsontextReader) }}
