// Package filter compiles and evaluates subscription filters: CEL
// expressions over an event that decide whether it is delivered.
//
// An expression sees one variable, event, a map with the keys
//
//	id    string, the event id
//	type  string, the event type, such as "order.created"
//	time  timestamp, when the event was ingested
//	data  dyn, the event's JSON payload
//
// and must have type bool, for example
//
//	event.type.startsWith("order.") && event.data.amount > 100
//
// Using any other key of event, or an expression that is not bool, is a
// compile error. Evaluation is cost-limited, so a filter cannot hold up
// delivery to other subscriptions.
package filter

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
)

const (
	// MaxLength is the longest expression accepted, in characters, as the
	// schema of spec.filter allows.
	MaxLength = 4096
	// MaxCost bounds the work of one evaluation, in CEL cost units (about
	// one per operation and per element a comprehension visits).
	MaxCost = 100_000
	// maxNesting bounds nested comprehensions (all/exists/map/filter).
	maxNesting = 2
)

// Keys of the event variable.
const (
	KeyID   = "id"
	KeyType = "type"
	KeyTime = "time"
	KeyData = "data"
)

// variable is the name the expression sees the event under.
const variable = "event"

var eventKeys = []string{KeyID, KeyType, KeyTime, KeyData}

// eventType is event's declared type. Its keys are enforced by
// eventKeysValidator, since CEL has no record types outside protobuf.
var eventType = cel.MapType(cel.StringType, cel.DynType)

var environment = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable(variable, eventType),
		ext.Strings(),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxLength),
		cel.ASTValidators(
			cel.ValidateDurationLiterals(),
			cel.ValidateTimestampLiterals(),
			cel.ValidateRegexLiterals(),
			cel.ValidateComprehensionNestingLimit(maxNesting),
			eventKeysValidator{},
		),
	)
})

// Filter is a compiled filter expression. It is safe for concurrent use.
type Filter struct {
	source  string
	program cel.Program
}

// Compile parses and type-checks expr. Errors give the 1-based line and
// column of each problem.
func Compile(expr string) (*Filter, error) {
	if n := utf8.RuneCountInString(expr); n > MaxLength {
		return nil, fmt.Errorf("is %d characters long, maximum is %d", n, MaxLength)
	}
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("is empty")
	}
	env, err := environment()
	if err != nil {
		return nil, fmt.Errorf("creating the CEL environment: %w", err)
	}
	checked, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, compileError(iss)
	}
	if out := checked.OutputType(); !out.IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must be a bool expression, but has type %s; compare explicitly, for example event.data.flag == true", out)
	}
	program, err := env.Program(checked, cel.CostLimit(MaxCost))
	if err != nil {
		return nil, fmt.Errorf("planning the expression: %w", err)
	}
	return &Filter{source: expr, program: program}, nil
}

// String returns the expression the filter was compiled from.
func (f *Filter) String() string { return f.source }

// Match evaluates the filter on event (keys id, type, time, data; see the
// package documentation). A missing key or field, a type mismatch at run
// time, or exceeding MaxCost is an error, never a panic.
func (f *Filter) Match(event map[string]any) (matched bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			matched, err = false, fmt.Errorf("evaluating filter: %v", r)
		}
	}()
	out, _, err := f.program.Eval(map[string]any{variable: event})
	if err != nil {
		return false, fmt.Errorf("evaluating filter: %w", err)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("evaluating filter: result has type %s, not bool", out.Type())
	}
	return bool(b), nil
}

// compileError lists CEL's issues with their positions, without the source
// snippets CEL adds (the caller shows the expression where it helps).
func compileError(iss *cel.Issues) error {
	var msgs []string
	for _, e := range iss.Errors() {
		msg := strings.TrimSuffix(e.Message, " (in container '')")
		msgs = append(msgs, fmt.Sprintf("line %d, column %d: %s", e.Location.Line(), e.Location.Column()+1, msg))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// eventKeysValidator refuses event.<key> and event["<key>"] for keys an
// event does not have, so a misspelt key fails at compile time rather than
// on every event.
type eventKeysValidator struct{}

func (eventKeysValidator) Name() string { return "hookline.event_keys" }

func (eventKeysValidator) Validate(_ *cel.Env, _ cel.ValidatorConfig, a *ast.AST, iss *cel.Issues) {
	isEvent := func(e ast.Expr) bool {
		return e.Kind() == ast.IdentKind && e.AsIdent() == variable && a.GetType(e.ID()).IsExactType(eventType)
	}
	check := func(id int64, key string) {
		for _, k := range eventKeys {
			if k == key {
				return
			}
		}
		iss.ReportErrorAtID(id, "event has no key %q (keys: %s)", key, strings.Join(eventKeys, ", "))
	}
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.SelectKind:
			if sel := e.AsSelect(); isEvent(sel.Operand()) {
				check(e.ID(), sel.FieldName())
			}
		case ast.CallKind:
			call := e.AsCall()
			if call.FunctionName() != operators.Index || len(call.Args()) != 2 || !isEvent(call.Args()[0]) {
				return
			}
			if arg := call.Args()[1]; arg.Kind() == ast.LiteralKind {
				if s, ok := arg.AsLiteral().(types.String); ok {
					check(arg.ID(), string(s))
				}
			}
		}
	}))
}
