package filter

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCompile(t *testing.T) {
	tests := []struct {
		name string
		expr string
		// wantErr is a substring of the expected error, or "" for success.
		wantErr string
	}{
		{name: "type equality", expr: `event.type == "order.created"`},
		{name: "data comparison", expr: `event.data.amount > 100`},
		{name: "string functions", expr: `event.type.startsWith("order.") && event.data.customer.lowerAscii() == "acme"`},
		{name: "index syntax", expr: `event["id"] != ""`},
		{name: "presence test", expr: `has(event.data.priority) && event.data.priority == "high"`},
		{name: "list macro", expr: `event.data.items.exists(i, i.sku == "X-1")`},
		{name: "timestamp", expr: `event.time > timestamp("2026-01-01T00:00:00Z")`},
		{name: "in operator", expr: `event.data.region in ["eu", "us"]`},
		{name: "multi-line", expr: "event.type == \"a\"\n  || event.type == \"b\""},
		{name: "literal true", expr: `true`},

		{name: "empty", expr: ``, wantErr: "is empty"},
		{name: "blank", expr: "  \n\t", wantErr: "is empty"},
		{name: "too long", expr: `true || ` + strings.Repeat(" ", MaxLength), wantErr: "is 4104 characters long, maximum is 4096"},
		{name: "syntax error", expr: `event.type ==`, wantErr: "line 1, column 14: Syntax error"},
		{name: "syntax error on second line", expr: "event.type == \"a\" &&\n  event.data.x ==", wantErr: "line 2, column 18"},
		{name: "undeclared variable", expr: `evnt.type == "a"`, wantErr: "line 1, column 1: undeclared reference to 'evnt'"},
		{name: "unknown key", expr: `event.tpye == "order.created"`, wantErr: `line 1, column 6: event has no key "tpye" (keys: id, type, time, data)`},
		{name: "unknown key by index", expr: `event["source"] == "x"`, wantErr: `line 1, column 7: event has no key "source"`},
		{name: "unknown key in has", expr: `has(event.tenant)`, wantErr: `event has no key "tenant"`},
		{name: "not bool", expr: `event.data.amount + 1`, wantErr: "must be a bool expression, but has type int"},
		{name: "string result", expr: `"yes"`, wantErr: "has type string"},
		{name: "dyn result", expr: `event.data.flag`, wantErr: "compare explicitly"},
		{name: "type error", expr: `1 + "a" == 2`, wantErr: "line 1, column 3: found no matching overload for '_+_'"},
		{name: "bad regex", expr: `event.type.matches("(")`, wantErr: "line 1, column 20"},
		{name: "bad timestamp literal", expr: `event.time > timestamp("yesterday")`, wantErr: "timestamp"},
		{name: "nested comprehensions", expr: `[1].all(a, [2].all(b, [3].all(c, a < b)))`, wantErr: "comprehension"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile(tt.expr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Compile(%q) = %v, want success", tt.expr, err)
				}
				if f.String() != tt.expr {
					t.Errorf("String() = %q, want %q", f.String(), tt.expr)
				}
				return
			}
			if err == nil {
				t.Fatalf("Compile(%q) succeeded, want an error containing %q", tt.expr, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Compile(%q) = %q, want it to contain %q", tt.expr, err, tt.wantErr)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	ingested := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	// Data as encoding/json decodes it: numbers are float64.
	order := map[string]any{
		KeyID:   "evt_1",
		KeyType: "order.created",
		KeyTime: ingested,
		KeyData: map[string]any{
			"amount":   float64(250),
			"customer": "ACME",
			"items":    []any{map[string]any{"sku": "X-1"}, map[string]any{"sku": "Y-2"}},
			"flag":     true,
		},
	}
	big := map[string]any{KeyID: "evt_2", KeyType: "bulk", KeyTime: ingested, KeyData: map[string]any{"items": make([]any, 1_000)}}
	tests := []struct {
		name    string
		expr    string
		event   map[string]any
		want    bool
		wantErr string
	}{
		{name: "type matches", expr: `event.type == "order.created"`, event: order, want: true},
		{name: "type differs", expr: `event.type == "order.cancelled"`, event: order, want: false},
		{name: "float data against int literal", expr: `event.data.amount > 100`, event: order, want: true},
		{name: "float data below int literal", expr: `event.data.amount > 1000`, event: order, want: false},
		{name: "int equality across types", expr: `event.data.amount == 250`, event: order, want: true},
		{name: "string function", expr: `event.data.customer.lowerAscii() == "acme"`, event: order, want: true},
		{name: "list macro", expr: `event.data.items.exists(i, i.sku == "Y-2")`, event: order, want: true},
		{name: "time is a timestamp", expr: `event.time < timestamp("2027-01-01T00:00:00Z")`, event: order, want: true},
		{name: "id", expr: `event.id.startsWith("evt_")`, event: order, want: true},
		{name: "bool data", expr: `event.data.flag == true`, event: order, want: true},
		{name: "has guards a missing field", expr: `has(event.data.coupon) && event.data.coupon == "X"`, event: order, want: false},
		{name: "short-circuit absorbs an error", expr: `event.type == "other" && event.data.missing == 1`, event: order, want: false},

		{name: "missing data field", expr: `event.data.coupon == "X"`, event: order, wantErr: "no such key: coupon"},
		{name: "missing event key", expr: `event.data.amount > 1`, event: map[string]any{KeyType: "t"}, wantErr: "no such key: data"},
		{name: "type mismatch at run time", expr: `event.data.customer > 3`, event: order, wantErr: "no such overload"},
		{name: "nil event", expr: `event.type == "x"`, event: nil, wantErr: "no such key: type"},
		{name: "unsupported Go value", expr: `event.data.c == 1`, event: map[string]any{KeyData: map[string]any{"c": make(chan int)}}, wantErr: "evaluating filter"},
		{name: "cost limit", expr: `event.data.items.all(i, event.data.items.all(j, i == j))`, event: big, wantErr: "cost limit exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile(tt.expr)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.expr, err)
			}
			got, err := f.Match(tt.event)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Match = %v, want an error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Match error = %q, want it to contain %q", err, tt.wantErr)
				}
				if got {
					t.Errorf("Match = true alongside an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

// The dispatcher routes from many goroutines through one compiled filter.
func TestMatchConcurrently(t *testing.T) {
	f, err := Compile(`event.data.n % 2 == 0`)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := g*1000 + i
				got, err := f.Match(map[string]any{KeyData: map[string]any{"n": n}})
				if err != nil {
					errs <- err
					return
				}
				if got != (n%2 == 0) {
					errs <- fmt.Errorf("Match for n=%d = %v", n, got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
