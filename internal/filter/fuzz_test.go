package filter

import (
	"encoding/json"
	"testing"
)

// FuzzCompileAndMatch feeds arbitrary expressions and event data to the
// filter: compiling and matching may fail, but never panic or run away (the
// cost limit bounds every evaluation).
func FuzzCompileAndMatch(f *testing.F) {
	seeds := []struct{ expr, data string }{
		{`event.type == "order.created"`, `{"amount": 12}`},
		{`event.data.amount > 100`, `{"amount": 250}`},
		{`has(event.data.items) && event.data.items.size() > 2`, `{"items": [1, 2, 3]}`},
		{`event.data.items.all(i, event.data.items.all(j, i == j))`, `{"items": [null, null]}`},
		{`event.id.startsWith("evt_") || event.data.flag == true`, `{"flag": true}`},
		{`event.data.customer.country in ["DE", "PL"]`, `{"customer": {"country": "PL"}}`},
		{`)(`, `null`},
	}
	for _, s := range seeds {
		f.Add(s.expr, s.data)
	}
	f.Fuzz(func(t *testing.T, expr, data string) {
		flt, err := Compile(expr)
		if err != nil {
			return
		}
		var decoded any
		if json.Unmarshal([]byte(data), &decoded) != nil {
			return
		}
		_, _ = flt.Match(map[string]any{KeyID: "evt_1", KeyType: "order.created", KeyTime: "2026-01-01T00:00:00Z", KeyData: decoded})
	})
}
