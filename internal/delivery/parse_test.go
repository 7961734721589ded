package delivery

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

func TestParseRetryAfter(t *testing.T) {
	now := sentAt
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"7", 7 * time.Second},
		{" 7 ", 7 * time.Second},
		{"007", 7 * time.Second},
		{"86400", 24 * time.Hour},
		{"-7", 0},
		{"+7", 0},
		{"7.5", 0},
		{"7s", 0},
		{"soon", 0},
		{"99999999999999999999999", time.Duration(maxRetryAfterSeconds) * time.Second},
		{strconv.FormatInt(maxRetryAfterSeconds+1, 10), time.Duration(maxRetryAfterSeconds) * time.Second},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-90 * time.Second).Format(http.TimeFormat), 0},
		{now.Format(http.TimeFormat), 0},
		// The obsolete forms HTTP still accepts.
		{now.Add(time.Minute).Format(time.RFC850), time.Minute},
		{now.Add(time.Minute).Format(time.ANSIC), time.Minute},
		{"Mon, 32 Jan 2026 00:00:00 GMT", 0},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestSnippet(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		secrets []string
		want    string
	}{
		{"plain", "upstream busy", nil, "upstream busy"},
		{"whitespace collapsed", "  a\r\n\tb   c\n", nil, "a b c"},
		{"control bytes dropped", "a\x00\x1b[31mb\x7f", nil, "a [31mb"},
		{"invalid UTF-8 replaced", "a\xff\xfeb", nil, "a b"},
		{"unicode kept", "échec ✗", nil, "échec ✗"},
		{"empty", "", nil, ""},
		{"only noise", "\x00\n\t ", nil, ""},
		{"header value redacted", "got token=s3cr3t-value!", []string{"s3cr3t-value"}, "got token=[redacted]!"},
		{"every value redacted", "a=one1 b=two2", []string{"one1", "two2"}, "a=[redacted] b=[redacted]"},
		{"short values left alone", "abc", []string{"b"}, "abc"},
		{"longest first", "Authorization: Bearer tok3n-value", []string{"tok3n-value", "Bearer tok3n-value"}, "Authorization: [redacted]"},
		{"cut at the limit", strings.Repeat("x", 300), nil, strings.Repeat("x", MaxSnippetBytes-3) + "..."},
		{"cut on a rune boundary", strings.Repeat("é", 200), nil, strings.Repeat("é", (MaxSnippetBytes-3)/2) + "..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := snippet([]byte(tc.in), tc.secrets); got != tc.want {
				t.Fatalf("snippet(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("7")
	f.Add("")
	f.Add("99999999999999999999999")
	f.Add(sentAt.Add(time.Hour).Format(http.TimeFormat))
	f.Add("Sun, 06 Nov 1994 08:49:37 GMT")
	f.Add("-1")
	f.Fuzz(func(t *testing.T, in string) {
		d := parseRetryAfter(in, sentAt)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %s, negative", in, d)
		}
		if v := strings.TrimSpace(in); isDigits(v) {
			secs, err := strconv.ParseInt(v, 10, 64)
			if err == nil && secs <= maxRetryAfterSeconds && d != time.Duration(secs)*time.Second {
				t.Fatalf("parseRetryAfter(%q) = %s, want %ds", in, d, secs)
			}
			if d%time.Second != 0 {
				t.Fatalf("parseRetryAfter(%q) = %s, not whole seconds", in, d)
			}
		}
	})
}

func FuzzSnippet(f *testing.F) {
	f.Add([]byte("upstream busy"), "s3cr3t")
	f.Add([]byte("a\xffb\x00c"), "")
	f.Add([]byte(strings.Repeat("é", 300)), "éé")
	// A value that is a rune's first bytes: redacting after sanitising
	// would cut the rune and leave its last byte behind.
	f.Add([]byte("0abcd\xe2\x82\xac"), "abcd\xe2\x82")
	f.Fuzz(func(t *testing.T, body []byte, secret string) {
		got := snippet(body, []string{secret})
		if len(got) > MaxSnippetBytes {
			t.Fatalf("snippet is %d bytes, limit %d", len(got), MaxSnippetBytes)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("snippet %q is not valid UTF-8", got)
		}
		for _, r := range got {
			if !unicode.IsPrint(r) {
				t.Fatalf("snippet %q holds unprintable %U", got, r)
			}
		}
		if got != strings.TrimSpace(got) || strings.Contains(got, "  ") {
			t.Fatalf("snippet %q has uncollapsed spaces", got)
		}
	})
}

func FuzzBody(f *testing.F) {
	f.Add("order.created", []byte(`{"a":1}`))
	f.Add("a", []byte(`"<&>"`))
	f.Add("x", []byte(`{"a":`))
	f.Add("", []byte(" "))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		body, err := Body(Message{Type: typ, Time: sentAt, Data: data})
		if err != nil {
			if len(bytes.TrimSpace(data)) > 0 && json.Valid(data) {
				t.Fatalf("Body refused valid data %q: %v", data, err)
			}
			return
		}
		var env struct {
			Type      string          `json:"type"`
			Timestamp string          `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			t.Fatalf("Body produced invalid JSON %q: %v", body, err)
		}
		if utf8.ValidString(typ) && env.Type != typ {
			t.Fatalf("type round-tripped as %q, want %q", env.Type, typ)
		}
		var want bytes.Buffer
		if len(bytes.TrimSpace(data)) == 0 {
			want.WriteString("null")
		} else if err := json.Compact(&want, data); err != nil {
			t.Fatalf("Body accepted data that does not compact: %v", err)
		}
		if !bytes.Equal(env.Data, want.Bytes()) {
			t.Fatalf("data = %s, want %s", env.Data, want.Bytes())
		}
	})
}
