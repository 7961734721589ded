package ingest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// benchBatchEvents and benchDataBytes match the load the data-plane
// benchmark sends to the batch endpoint: batches of 100 events of about
// 512 bytes of data each.
const (
	benchBatchEvents = 100
	benchDataBytes   = 512
)

// benchData is about benchDataBytes of compact, nested event data shaped
// like a typical business event, numbered seq so that no two events are
// byte-identical.
func benchData(seq int) []byte {
	type line struct {
		SKU   string  `json:"sku"`
		Name  string  `json:"name"`
		Qty   int     `json:"qty"`
		Price float64 `json:"price"`
	}
	v := map[string]any{
		"seq": seq,
		"order": map[string]any{
			"id":       "ord_" + strconv.Itoa(100000+seq),
			"status":   "paid",
			"currency": "EUR",
			"total":    128.4,
			"customer": map[string]any{
				"id":    "cus_" + strconv.Itoa(9000+seq),
				"email": "jane.doe+" + strconv.Itoa(seq) + "@example.com",
				"name":  "Jane Doe",
			},
			"lines": []line{
				{SKU: "SKU-0042", Name: "Blue mug, 350 ml", Qty: 2, Price: 12.5},
				{SKU: "SKU-1337", Name: "Tea \"Earl Grey\", loose leaf", Qty: 1, Price: 9.9},
			},
			"shipping": map[string]any{
				"address": map[string]any{
					"line1": "Hauptstra\u00dfe 5", "city": "Berlin", "postcode": "10115", "country": "DE",
				},
			},
			"tags":   []string{"web", "returning-customer"},
			"gift":   false,
			"coupon": nil,
		},
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	// Pad a note so that every event has about the same size.
	note := max(benchDataBytes-len(b)-len(`,"note":""`), 0)
	return append(append(b[:len(b)-1], `,"note":"`+strings.Repeat("n", note)+`"`...), '}')
}

// benchBatch is a native batch body as the load generator writes it: no
// whitespace between tokens. indent pretty-prints every event's data
// instead, as some producers do.
func benchBatch(indent bool) []byte {
	body := []byte(`{"events":[`)
	for i := range benchBatchEvents {
		if i > 0 {
			body = append(body, ',')
		}
		data := benchData(i)
		if indent {
			var buf bytes.Buffer
			if err := json.Indent(&buf, data, "", "  "); err != nil {
				panic(err)
			}
			data = buf.Bytes()
		}
		body = append(body, `{"id":"bench-`+strconv.Itoa(i)+`","type":"bench.ingest","data":`...)
		body = append(append(body, data...), '}')
	}
	return append(body, "]}"...)
}

// benchCloudEventsBatch is a CloudEvents JSON batch of the same events.
func benchCloudEventsBatch() []byte {
	body := []byte(`[`)
	for i := range benchBatchEvents {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"specversion":"1.0","id":"bench-`+strconv.Itoa(i)+`","source":"/bench","type":"bench.ingest",`+
			`"time":"2024-05-06T07:08:09.5Z","datacontenttype":"application/json","data":`...)
		body = append(append(body, benchData(i)...), '}')
	}
	return append(body, ']')
}

func BenchmarkDecodeBatch(b *testing.B) {
	for _, bc := range []struct {
		name   string
		body   []byte
		decode func([]byte, int) ([]item, error)
	}{
		{"native", benchBatch(false), decodeNativeBatch},
		{"native-indented", benchBatch(true), decodeNativeBatch},
		{"cloudevents", benchCloudEventsBatch(), decodeStructuredBatch},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				items, err := bc.decode(bc.body, DefaultMaxBatchEvents)
				if err != nil || len(items) != benchBatchEvents || items[0].err != nil {
					b.Fatalf("decoding the batch: %v", err)
				}
			}
		})
	}
}

func BenchmarkDecodeSingle(b *testing.B) {
	data := benchData(7)
	native := []byte(`{"id":"bench-7","type":"bench.ingest","data":` + string(data) + `}`)
	structured := []byte(`{"specversion":"1.0","id":"bench-7","source":"/bench","type":"bench.ingest",` +
		`"time":"2024-05-06T07:08:09.5Z","datacontenttype":"application/json","data":` + string(data) + `}`)
	header := http.Header{}
	header.Set("ce-specversion", "1.0")
	header.Set("ce-id", "bench-7")
	header.Set("ce-source", "/bench")
	header.Set("ce-type", "bench.ingest")
	for _, bc := range []struct {
		name   string
		body   []byte
		decode func([]byte) (draft, error)
	}{
		{"native", native, func(body []byte) (draft, error) { return decodeNative(body, "") }},
		{"structured", structured, func(body []byte) (draft, error) { return decodeStructured(body, "") }},
		{"binary", data, func(body []byte) (draft, error) { return decodeBinary(header, body) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				if _, err := bc.decode(bc.body); err != nil {
					b.Fatalf("decoding the event: %v", err)
				}
			}
		})
	}
}

// BenchmarkScanDocument measures the one validating pass over a batch
// (docs/benchmarks.md compares it with the hand-written scanner it
// replaced).
func BenchmarkScanDocument(b *testing.B) {
	body := benchBatch(false)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, ok := scanDocument(body, 3); !ok {
			b.Fatal("the batch does not scan")
		}
	}
}
