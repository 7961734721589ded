package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// unit says how a figure is printed and compared.
type unit int

const (
	perSecond unit = iota // events, signatures or writes per second
	duration              // seconds, printed in ms or s
	mebibytes             // bytes, printed in MiB
	plain                 // a bare number, such as writes per subscription per interval
)

// goal is what a row's ratio or figure must meet; the zero goal means the
// row is informational.
type goal struct {
	// onRatio compares the ratio (figure / baseline), else the figure.
	onRatio bool
	// op is ">=", ">", "<" or "<="; empty for no goal.
	op    string
	limit float64
}

func ratioAtLeast(limit float64) goal { return goal{onRatio: true, op: ">=", limit: limit} }
func ratioAbove(limit float64) goal   { return goal{onRatio: true, op: ">", limit: limit} }
func ratioAtMost(limit float64) goal  { return goal{onRatio: true, op: "<=", limit: limit} }
func figureBelow(limit float64) goal  { return goal{op: "<", limit: limit} }

// met says whether v meets the goal.
func (g goal) met(v float64) bool {
	switch g.op {
	case ">=":
		return v >= g.limit
	case ">":
		return v > g.limit
	case "<=":
		return v <= g.limit
	case "<":
		return v < g.limit
	}
	return false
}

// row is one line of the results table.
type row struct {
	// Name says what is measured, with its size.
	Name string
	// Unit of Figure and Baseline.
	Unit unit
	// Figure and Baseline are medians of the runs; NaN when not measured.
	Figure, Baseline float64
	// BaselineName says what the baseline is.
	BaselineName string
	Goal         goal
	// Runs are the individual measurements, figure then baseline.
	Runs, BaselineRuns []float64
	// Err is why the row could not be measured.
	Err error
}

// newRow returns a row with the medians of the runs.
func newRow(name string, u unit, figures []float64, baselineName string, baselines []float64, g goal) row {
	return row{Name: name, Unit: u, Figure: median(figures), Baseline: median(baselines), BaselineName: baselineName,
		Goal: g, Runs: figures, BaselineRuns: baselines}
}

// failedRow is a row that could not be measured.
func failedRow(name string, err error) row {
	return row{Name: name, Figure: math.NaN(), Baseline: math.NaN(), Err: err}
}

// Ratio is figure / baseline. When each run was paired with a baseline run
// measured right after it, it is the median of the runs' ratios, which the
// machine's load drifting between runs disturbs less. It is NaN when
// either is missing or a baseline is zero.
func (r row) Ratio() float64 {
	if len(r.Runs) > 1 && len(r.Runs) == len(r.BaselineRuns) {
		ratios := make([]float64, len(r.Runs))
		for i, f := range r.Runs {
			if r.BaselineRuns[i] == 0 {
				return math.NaN()
			}
			ratios[i] = f / r.BaselineRuns[i]
		}
		return median(ratios)
	}
	if math.IsNaN(r.Figure) || math.IsNaN(r.Baseline) || r.Baseline == 0 {
		return math.NaN()
	}
	return r.Figure / r.Baseline
}

// Measured says whether the row has a figure.
func (r row) Measured() bool {
	return r.Err == nil && !math.IsNaN(r.Figure) && !math.IsInf(r.Figure, 0)
}

// Result is PASS, MISS, "info" for a row without a goal, or "error".
func (r row) Result() string {
	switch {
	case !r.Measured():
		return "error"
	case r.Goal.op == "":
		return "info"
	}
	v := r.Figure
	if r.Goal.onRatio {
		v = r.Ratio()
	}
	if !math.IsNaN(v) && r.Goal.met(v) {
		return "PASS"
	}
	return "MISS"
}

// GoalText prints the goal as the table shows it.
func (r row) GoalText() string {
	g := r.Goal
	op := map[string]string{">=": "≥", ">": ">", "<=": "≤", "<": "<"}[g.op]
	switch {
	case g.op == "":
		return "—"
	case g.onRatio:
		return fmt.Sprintf("ratio %s %g", op, g.limit)
	default:
		return op + " " + formatValue(g.limit, r.Unit)
	}
}

// median of xs, NaN when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile of sorted durations by the nearest-rank method: the smallest
// value with at least p% of the values at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps 99.9% of 1000 at rank 999 despite rounding.
	rank := int(math.Ceil(p/100*float64(len(sorted)) - 1e-9))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// formatValue prints v in unit u.
func formatValue(v float64, u unit) string {
	if math.IsNaN(v) {
		return "—"
	}
	switch u {
	case perSecond:
		return thousands(v) + "/s"
	case duration:
		switch d := time.Duration(v * float64(time.Second)); {
		case d < 10*time.Millisecond:
			return fmt.Sprintf("%.2f ms", v*1000)
		case d < time.Second:
			return fmt.Sprintf("%.1f ms", v*1000)
		default:
			return fmt.Sprintf("%.2f s", v)
		}
	case mebibytes:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// thousands prints v rounded to an integer with comma separators, or with
// two decimals below 10.
func thousands(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func formatRatio(r float64) string {
	if math.IsNaN(r) {
		return "—"
	}
	return fmt.Sprintf("%.2f", r)
}

// printTable writes rows as a Markdown table, columns padded so that it
// reads as well in a terminal as rendered.
func printTable(w io.Writer, rows []row) error {
	header := []string{"#", "measurement", "figure", "baseline (same run)", "ratio", "goal", "result"}
	cells := [][]string{header}
	for i, r := range rows {
		base := formatValue(r.Baseline, r.Unit)
		if r.BaselineName != "" {
			base += " " + r.BaselineName
		}
		cells = append(cells, []string{fmt.Sprint(i + 1), r.Name, formatValue(r.Figure, r.Unit), base,
			formatRatio(r.Ratio()), r.GoalText(), r.Result()})
	}
	widths := make([]int, len(header))
	for _, line := range cells {
		for i, c := range line {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	writeLine := func(line []string) {
		b.WriteString("|")
		for i, c := range line {
			b.WriteString(" " + c + strings.Repeat(" ", widths[i]-len([]rune(c))) + " |")
		}
		b.WriteString("\n")
	}
	writeLine(cells[0])
	b.WriteString("|")
	for _, wd := range widths {
		b.WriteString(strings.Repeat("-", wd+2) + "|")
	}
	b.WriteString("\n")
	for _, line := range cells[1:] {
		writeLine(line)
	}
	for _, r := range rows {
		if r.Err != nil {
			fmt.Fprintf(&b, "\n%s: not measured: %v\n", r.Name, r.Err)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
