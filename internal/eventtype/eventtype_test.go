package eventtype

import (
	"regexp"
	"strings"
	"testing"
)

var patternRE = regexp.MustCompile(PatternRegexp)

type validationVector struct {
	in string
	// wantErr is a substring of the expected error, or "" for valid input.
	wantErr string
}

var patternVectors = []validationVector{
	// Valid.
	{"order", ""},
	{"order.created", ""},
	{"invoice.payment.failed", ""},
	{"Order.Created", ""},
	{"a", ""},
	{"0", ""},
	{"_", ""},
	{"-", ""},
	{"a-b_c.D-9", ""},
	{"*", ""},
	{">", ""},
	{"*.*", ""},
	{"order.*", ""},
	{"*.created", ""},
	{"order.>", ""},
	{"*.>", ""},
	{"a.*.c.>", ""},
	{"a.b.c.d.e.f.g.h", ""},
	{strings.Repeat("x", 64), ""},
	{strings.Repeat("x", 64) + "." + strings.Repeat("y", 64), ""},
	{strings.Repeat("a.", 127) + "b", ""}, // exactly 255
	{strings.Repeat("a.", 127) + ">", ""}, // exactly 255

	// Empty pattern and empty segments.
	{"", "event type pattern is empty"},
	{".", "empty segment at position 1"},
	{".order", "empty segment at position 1"},
	{"order.", "empty segment at position 2"},
	{"order..created", "empty segment at position 2"},
	{"a.b.c..d", "empty segment at position 4"},
	{"..", "empty segment at position 1"},
	{"*.", "empty segment at position 2"},
	{">.", `">" must be the last segment, found at segment 1 of 2`},

	// Invalid characters.
	{"order created", `invalid character ' ' in segment 1`},
	{"order.cre$ted", `invalid character '$' in segment 2`},
	{"a.b/c", `invalid character '/' in segment 2`},
	{"a:b", `invalid character ':' in segment 1`},
	{"ordér", `invalid character 'é' in segment 1`},
	{"a.b\n", `invalid character '\n' in segment 2`},
	{"a\x00", `invalid character '\x00' in segment 1`},
	{"a.\xff", `invalid byte 0xff in segment 2`},
	{"a.\uFFFD", `invalid character '�' in segment 2`},
	{"a+b", `invalid character '+' in segment 1`},
	{"a.#", `invalid character '#' in segment 2`},
	{"a.?", `invalid character '?' in segment 2`},

	// Wildcards that are not whole segments or not in place.
	{"order*", `wildcard '*' in segment 1 must be the whole segment`},
	{"a.*b", `wildcard '*' in segment 2 must be the whole segment`},
	{"a.**", `wildcard '*' in segment 2 must be the whole segment`},
	{"a.>>", `wildcard '>' in segment 2 must be the whole segment`},
	{"a.b>", `wildcard '>' in segment 2 must be the whole segment`},
	{"a.*>", `wildcard '*' in segment 2 must be the whole segment`},
	{">.a", `">" must be the last segment, found at segment 1 of 2`},
	{"a.>.b", `">" must be the last segment, found at segment 2 of 3`},
	{">.>", `">" must be the last segment, found at segment 1 of 2`},
	{">.*", `">" must be the last segment, found at segment 1 of 2`},

	// Length limits.
	{strings.Repeat("x", 65), "segment 1 is 65 characters long, maximum is 64"},
	{"a." + strings.Repeat("x", 100), "segment 2 is 100 characters long, maximum is 64"},
	{strings.Repeat("a.", 127) + "bc", "event type pattern is 256 characters long, maximum is 255"},
	{strings.Repeat("*.", 200) + ">", "event type pattern is 401 characters long, maximum is 255"},
}

func TestValidatePattern(t *testing.T) {
	for _, v := range patternVectors {
		err := ValidatePattern(v.in)
		switch {
		case v.wantErr == "" && err != nil:
			t.Errorf("ValidatePattern(%q) = %v, want nil", v.in, err)
		case v.wantErr != "" && err == nil:
			t.Errorf("ValidatePattern(%q) = nil, want error containing %q", v.in, v.wantErr)
		case v.wantErr != "" && !strings.Contains(err.Error(), v.wantErr):
			t.Errorf("ValidatePattern(%q) = %q, want error containing %q", v.in, err, v.wantErr)
		}
	}
}

func TestPatternRegexpAgreesWithValidatePattern(t *testing.T) {
	vectors := append([]validationVector(nil), patternVectors...)
	for _, v := range typeVectors {
		vectors = append(vectors, validationVector{in: v.in})
	}
	for _, v := range vectors {
		if len(v.in) > MaxLength {
			// The schema enforces the overall length with maxLength.
			continue
		}
		valid := ValidatePattern(v.in) == nil
		if got := patternRE.MatchString(v.in); got != valid {
			t.Errorf("PatternRegexp.MatchString(%q) = %v, ValidatePattern accepts = %v", v.in, got, valid)
		}
	}
}

// The regexp ends up in an OpenAPI schema evaluated by ECMA-262 engines, so
// it must stay within the constructs both dialects read the same way.
func TestPatternRegexpIsPortable(t *testing.T) {
	if !strings.HasPrefix(PatternRegexp, "^") || !strings.HasSuffix(PatternRegexp, "$") {
		t.Errorf("PatternRegexp %q is not anchored", PatternRegexp)
	}
	for _, construct := range []string{"(?=", "(?!", "(?<", "(?P", `\A`, `\z`, `\Q`, "[[:", `\p`, "(?i", "(?s", "(?m"} {
		if strings.Contains(PatternRegexp, construct) {
			t.Errorf("PatternRegexp uses %q, which is not portable to ECMA-262", construct)
		}
	}
}

var typeVectors = []validationVector{
	{"order", ""},
	{"order.created", ""},
	{"invoice.payment.failed", ""},
	{"A-b_C.0-9", ""},
	{strings.Repeat("a.", 127) + "b", ""},
	{strings.Repeat("x", 64), ""},

	{"", "event type is empty"},
	{"order.", "empty segment at position 2"},
	{".order", "empty segment at position 1"},
	{"a..b", "empty segment at position 2"},
	{"*", `wildcard "*" in segment 1 is only allowed in patterns`},
	{">", `wildcard ">" in segment 1 is only allowed in patterns`},
	{"order.*", `wildcard "*" in segment 2 is only allowed in patterns`},
	{"order.>", `wildcard ">" in segment 2 is only allowed in patterns`},
	{"order.cre*ted", `wildcard '*' in segment 2 is only allowed in patterns`},
	{"order.created!", `invalid character '!' in segment 2`},
	{"order created", `invalid character ' ' in segment 1`},
	{"a.\xc3", `invalid byte 0xc3 in segment 2`},
	{strings.Repeat("x", 65), "segment 1 is 65 characters long, maximum is 64"},
	{strings.Repeat("a.", 127) + "bc", "event type is 256 characters long, maximum is 255"},
}

func TestValidateType(t *testing.T) {
	for _, v := range typeVectors {
		err := ValidateType(v.in)
		switch {
		case v.wantErr == "" && err != nil:
			t.Errorf("ValidateType(%q) = %v, want nil", v.in, err)
		case v.wantErr != "" && err == nil:
			t.Errorf("ValidateType(%q) = nil, want error containing %q", v.in, v.wantErr)
		case v.wantErr != "" && !strings.Contains(err.Error(), v.wantErr):
			t.Errorf("ValidateType(%q) = %q, want error containing %q", v.in, err, v.wantErr)
		}
	}
}

func TestValidateTooLongDoesNotEchoInput(t *testing.T) {
	long := strings.Repeat("z", 1000)
	for _, err := range []error{ValidatePattern(long), ValidateType(long)} {
		if err == nil || strings.Contains(err.Error(), "zzzz") {
			t.Errorf("error for oversized input = %v, want an error without the input", err)
		}
	}
}

func TestCompileRejectsInvalid(t *testing.T) {
	for _, v := range patternVectors {
		if v.wantErr == "" {
			continue
		}
		p, err := Compile(v.in)
		if err == nil {
			t.Errorf("Compile(%q) succeeded, want error", v.in)
		}
		if p.Match("a") || p.String() != "" {
			t.Errorf("Compile(%q) returned a usable Pattern alongside its error", v.in)
		}
	}
}

var matchVectors = []struct {
	pattern   string
	eventType string
	want      bool
}{
	// Literal patterns.
	{"order.created", "order.created", true},
	{"order.created", "order.updated", false},
	{"order.created", "order", false},
	{"order.created", "order.created.v2", false},
	{"order.created", "x.order.created", false},
	{"order.created", "order.createdx", false},
	{"order.created", "order.create", false},
	{"order", "order", true},
	{"order", "orders", false},
	{"order", "order.created", false},
	{"a.b.c", "a.b.c", true},
	{"a.b.c", "a.b", false},

	// Case sensitivity.
	{"order.created", "Order.created", false},
	{"order.created", "order.CREATED", false},
	{"Order.*", "order.created", false},
	{"Order.*", "Order.created", true},

	// '*' matches exactly one segment.
	{"*", "order", true},
	{"*", "order.created", false},
	{"*", "", false},
	{"order.*", "order.created", true},
	{"order.*", "order.updated", true},
	{"order.*", "order", false},
	{"order.*", "order.", false},
	{"order.*", "order.created.v2", false},
	{"order.*", "invoice.created", false},
	{"*.created", "order.created", true},
	{"*.created", "invoice.created", true},
	{"*.created", "created", false},
	{"*.created", "a.b.created", false},
	{"*.created", ".created", false},
	{"a.*.c", "a.b.c", true},
	{"a.*.c", "a.xyz.c", true},
	{"a.*.c", "a.c", false},
	{"a.*.c", "a.b.b.c", false},
	{"a.*.c", "a..c", false},
	{"*.*", "a.b", true},
	{"*.*", "a", false},
	{"*.*", "a.b.c", false},

	// '>' matches one or more remaining segments.
	{">", "order", true},
	{">", "order.created", true},
	{">", "a.b.c.d.e", true},
	{">", "", false},
	{">", ".", false},
	{">", "a.", false},
	{">", ".a", false},
	{">", "a..b", false},
	{"order.>", "order.created", true},
	{"order.>", "order.created.v2", true},
	{"order.>", "order.a.b.c.d", true},
	{"order.>", "order", false},
	{"order.>", "order.", false},
	{"order.>", "order..x", false},
	{"order.>", "order.x.", false},
	{"order.>", "orders.created", false},
	{"order.>", "invoice.created", false},
	{"*.>", "a.b", true},
	{"*.>", "a.b.c", true},
	{"*.>", "a", false},
	{"a.*.c.>", "a.b.c.d", true},
	{"a.*.c.>", "a.b.c.d.e", true},
	{"a.*.c.>", "a.b.c", false},
	{"a.*.c.>", "a.b.x.d", false},

	// Malformed event types are never selected through a wildcard.
	{"*", "a.", false},
	{"a.*", "a..", false},
}

func TestMatch(t *testing.T) {
	for _, v := range matchVectors {
		p, err := Compile(v.pattern)
		if err != nil {
			t.Fatalf("Compile(%q): %v", v.pattern, err)
		}
		if got := p.Match(v.eventType); got != v.want {
			t.Errorf("Compile(%q).Match(%q) = %v, want %v", v.pattern, v.eventType, got, v.want)
		}
		if p.String() != v.pattern {
			t.Errorf("Compile(%q).String() = %q", v.pattern, p.String())
		}
		// A single-pattern Set goes through the literal and catch-all
		// shortcuts, which must not change the answer.
		s, err := CompileSet([]string{v.pattern})
		if err != nil {
			t.Fatalf("CompileSet([%q]): %v", v.pattern, err)
		}
		if got := s.Match(v.eventType); got != v.want {
			t.Errorf("CompileSet([%q]).Match(%q) = %v, want %v", v.pattern, v.eventType, got, v.want)
		}
		if got := referenceMatch(t, v.pattern, v.eventType); got != v.want {
			t.Errorf("reference match of %q against %q = %v, want %v (test vector wrong?)", v.pattern, v.eventType, got, v.want)
		}
	}
}

func TestZeroValuesMatchNothing(t *testing.T) {
	var p Pattern
	var s Set
	for _, ev := range []string{"", "a", "a.b", ">"} {
		if p.Match(ev) {
			t.Errorf("zero Pattern matched %q", ev)
		}
		if s.Match(ev) {
			t.Errorf("zero Set matched %q", ev)
		}
	}
}

func TestCompileSet(t *testing.T) {
	s, err := CompileSet([]string{"order.created", "invoice.*", "customer.>", "Order.Created"})
	if err != nil {
		t.Fatalf("CompileSet: %v", err)
	}
	for ev, want := range map[string]bool{
		"order.created":          true,
		"Order.Created":          true,
		"order.Created":          false,
		"order.updated":          false,
		"invoice.paid":           true,
		"invoice.payment.failed": false,
		"customer.deleted":       true,
		"customer.address.moved": true,
		"customer":               false,
		"":                       false,
	} {
		if got := s.Match(ev); got != want {
			t.Errorf("Set.Match(%q) = %v, want %v", ev, got, want)
		}
	}

	empty, err := CompileSet(nil)
	if err != nil {
		t.Fatalf("CompileSet(nil): %v", err)
	}
	if empty.Match("order.created") {
		t.Error("empty Set matched")
	}

	all, err := CompileSet([]string{"order.created", ">"})
	if err != nil {
		t.Fatalf("CompileSet: %v", err)
	}
	if !all.Match("anything.at.all") || all.Match("") || all.Match("a..b") {
		t.Error(`Set containing ">" does not behave like ">"`)
	}
}

func TestCompileSetNamesInvalidIndex(t *testing.T) {
	_, err := CompileSet([]string{"order.created", "order.*", "bad..pattern"})
	if err == nil {
		t.Fatal("CompileSet accepted an invalid pattern")
	}
	for _, want := range []string{"pattern 2", "empty segment at position 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CompileSet error %q does not contain %q", err, want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	p, err := Compile("a.*.c.>")
	if err != nil {
		t.Fatal(err)
	}
	s, err := CompileSet([]string{"x.y", "order.*", "invoice.>"})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		p.Match("a.b.c.d.e")
		p.Match("a.b.x.d")
		s.Match("invoice.payment.failed")
		s.Match("x.y")
		s.Match("nothing.here")
	}); n != 0 {
		t.Errorf("Match allocates %v times per run, want 0", n)
	}
}

var benchSink bool

func BenchmarkMatch(b *testing.B) {
	cases := []struct{ pattern, eventType string }{
		{"order.created", "order.created"},
		{"order.*", "order.created"},
		{"*.payment.failed", "invoice.payment.failed"},
		{"invoice.>", "invoice.payment.failed"},
		{"a.*.c.>", "a.b.x.d.e"},
	}
	patterns := make([]Pattern, len(cases))
	for i, c := range cases {
		p, err := Compile(c.pattern)
		if err != nil {
			b.Fatal(err)
		}
		patterns[i] = p
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, c := range cases {
			benchSink = patterns[i].Match(c.eventType)
		}
	}
}

func BenchmarkSetMatch(b *testing.B) {
	s, err := CompileSet([]string{"order.created", "order.updated", "customer.*", "invoice.>", "*.deleted"})
	if err != nil {
		b.Fatal(err)
	}
	events := []string{"order.created", "invoice.payment.failed", "product.deleted", "shipment.dispatched"}
	b.ReportAllocs()
	for b.Loop() {
		for _, ev := range events {
			benchSink = s.Match(ev)
		}
	}
}

// referenceMatch is an independent definition of pattern semantics, built by
// translating the pattern into a regular expression over the event type.
func referenceMatch(t testing.TB, pattern, eventType string) bool {
	t.Helper()
	var b strings.Builder
	b.WriteString("^")
	for i, seg := range strings.Split(pattern, ".") {
		if i > 0 {
			b.WriteString(`\.`)
		}
		switch seg {
		case "*":
			b.WriteString(`[^.]+`)
		case ">":
			b.WriteString(`[^.]+(?:\.[^.]+)*`)
		default:
			b.WriteString(regexp.QuoteMeta(seg))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String()).MatchString(eventType)
}
