package delivery

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
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
