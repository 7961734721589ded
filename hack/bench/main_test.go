package main

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hookline/hookline/test/testenv"
)

// TestSmoke runs every row with tiny sizes, so that the harness keeps
// working as the code changes. It checks that every row produced a number
// and that the table was printed, never what the numbers are: they mean
// nothing at these sizes, and benchmarks never fail the tests.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server, the manager and three dispatchers")
	}
	ctrllog.SetLogger(logr.Discard())
	// A slow machine makes the smoke run slower, never failed.
	boundedWaits = false
	t.Cleanup(func() { boundedWaits = true })
	cfg, err := parseFlags([]string{"-smoke", "-dir", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := testenv.Context(t)
	defer cancel()
	var out, progress bytes.Buffer
	rows, err := run(ctx, cfg, &out, &progress)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s\noutput:\n%s", err, progress.String(), out.String())
	}
	// One row per figure of sections 1 to 10.
	if len(rows) != 22 {
		t.Errorf("got %d rows, want 22", len(rows))
	}
	text := out.String()
	for _, r := range rows {
		if !r.Measured() {
			t.Errorf("row %q has no figure: %v", r.Name, r.Err)
		}
		if math.IsNaN(r.Baseline) {
			t.Errorf("row %q has no baseline", r.Name)
		}
		if !strings.Contains(text, "| "+r.Name+" ") {
			t.Errorf("the table lacks row %q", r.Name)
		}
	}
	for _, want := range []string{"| # ", "| measurement ", "| result |", "CPU: ", "Queue disk: "} {
		if !strings.Contains(text, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s\nprogress:\n%s", text, progress.String())
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-smoke", "-runs=2", "-sections=1,7"})
	if err != nil {
		t.Fatal(err)
	}
	small := defaultConfig().smoke()
	if cfg.Runs != 2 || cfg.Events != small.Events || cfg.Scale != small.Scale || cfg.DeadEvents != small.DeadEvents {
		t.Errorf("smoke with -runs=2: runs %d events %d scale %d, want 2 %d %d", cfg.Runs, cfg.Events, cfg.Scale, small.Events, small.Scale)
	}
	if !cfg.wants(1) || !cfg.wants(7) || cfg.wants(2) {
		t.Errorf("sections %v", cfg.Sections)
	}
	full, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if full.Runs != 3 || full.Scale != 10000 || full.DeadEvents != 100000 || !full.wants(8) || !full.wants(10) {
		t.Errorf("defaults: %+v", full)
	}
	for _, bad := range [][]string{{"-sections=11"}, {"-runs=0"}, {"-dead-queue-bytes=0"}, {"-dead-healthy=0"}, {"-hang-fraction=1"}, {"-batch-size=1001"}, {"extra"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) succeeded", bad)
		}
	}
}

func TestMedianAndPercentile(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var sorted []time.Duration
	for i := 1; i <= 1000; i++ {
		sorted = append(sorted, ms(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, ms(500)}, {99, ms(990)}, {99.9, ms(999)}, {100, ms(1000)}, {0, ms(1)}} {
		if got := percentile(sorted, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile([]time.Duration{ms(7)}, 99.9); got != ms(7) {
		t.Errorf("p99.9 of one value = %v", got)
	}
}

func TestRowResult(t *testing.T) {
	for _, tc := range []struct {
		name             string
		figure, baseline float64
		goal             goal
		unit             unit
		result, goalText string
	}{
		{"ratio met", 60, 100, ratioAtLeast(0.6), perSecond, "PASS", "ratio ≥ 0.6"},
		{"ratio missed", 59, 100, ratioAtLeast(0.6), perSecond, "MISS", "ratio ≥ 0.6"},
		{"strictly above", 100, 100, ratioAbove(1), perSecond, "MISS", "ratio > 1"},
		{"at most", 100, 100, ratioAtMost(1), perSecond, "PASS", "ratio ≤ 1"},
		{"figure below", 0.024, 0.001, figureBelow(0.025), duration, "PASS", "< 25.0 ms"},
		{"figure not below", 0.025, 0.001, figureBelow(0.025), duration, "MISS", "< 25.0 ms"},
		{"no goal", 1, 2, goal{}, plain, "info", "—"},
		{"zero baseline", 1, 0, ratioAtLeast(0.5), perSecond, "MISS", "ratio ≥ 0.5"},
		{"not measured", math.NaN(), 1, ratioAtLeast(0.5), perSecond, "error", "ratio ≥ 0.5"},
	} {
		r := row{Name: tc.name, Unit: tc.unit, Figure: tc.figure, Baseline: tc.baseline, Goal: tc.goal}
		if got := r.Result(); got != tc.result {
			t.Errorf("%s: result %s, want %s", tc.name, got, tc.result)
		}
		if got := r.GoalText(); got != tc.goalText {
			t.Errorf("%s: goal %q, want %q", tc.name, got, tc.goalText)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		u    unit
		want string
	}{
		{12345.6, perSecond, "12,346/s"},
		{999, perSecond, "999/s"},
		{1234567, perSecond, "1,234,567/s"},
		{2.5, perSecond, "2.50/s"},
		{0.0012345, duration, "1.23 ms"},
		{0.0251, duration, "25.1 ms"},
		{61.234, duration, "61.23 s"},
		{3 << 20, mebibytes, "3.0 MiB"},
		{0.5, plain, "0.50"},
		{math.NaN(), perSecond, "—"},
	} {
		if got := formatValue(tc.v, tc.u); got != tc.want {
			t.Errorf("formatValue(%v, %v) = %q, want %q", tc.v, tc.u, got, tc.want)
		}
	}
}

func TestPrintTable(t *testing.T) {
	var b bytes.Buffer
	rows := []row{
		newRow("Throughput", perSecond, []float64{100, 300, 200}, "plain", []float64{400, 400, 400}, ratioAtLeast(0.6)),
		failedRow("Broken", os.ErrDeadlineExceeded),
	}
	if err := printTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	want := `| # | measurement | figure | baseline (same run) | ratio | goal        | result |
|---|-------------|--------|---------------------|-------|-------------|--------|
| 1 | Throughput  | 200/s  | 400/s plain         | 0.50  | ratio ≥ 0.6 | MISS   |
| 2 | Broken      | —      | —                   | —     | —           | error  |

Broken: not measured: i/o timeout
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPairedRatio(t *testing.T) {
	// Each run over the baseline measured right after it: 0.5, 0.5, 2.
	r := newRow("paired", perSecond, []float64{100, 200, 800}, "", []float64{200, 400, 400}, ratioAtLeast(0.6))
	if got := r.Ratio(); got != 0.5 {
		t.Errorf("paired ratio = %v, want 0.5, the median of the runs' ratios", got)
	}
	if got := r.Result(); got != "MISS" {
		t.Errorf("result %s", got)
	}
	single := newRow("single", perSecond, []float64{300}, "", []float64{400}, ratioAtLeast(0.6))
	if got := single.Ratio(); got != 0.75 {
		t.Errorf("single ratio = %v", got)
	}
	unpaired := newRow("unpaired", perSecond, []float64{300, 500}, "", []float64{400}, goal{})
	if got := unpaired.Ratio(); got != 1 {
		t.Errorf("unpaired ratio = %v, want the medians' ratio 1", got)
	}
}

func TestSumMetric(t *testing.T) {
	text := `# HELP hookline_status_writes_total Subscription status applies.
# TYPE hookline_status_writes_total counter
hookline_status_writes_total 42
hookline_status_writes_total_extra 5
hookline_deliveries_total{namespace="a",outcome="delivered",subscription="x"} 3
hookline_deliveries_total{namespace="a",outcome="retried",subscription="y{z}"} 4.5
`
	for _, tc := range []struct {
		name  string
		want  float64
		found bool
	}{
		{"hookline_status_writes_total", 42, true},
		{"hookline_deliveries_total", 7.5, true},
		{"hookline_missing", 0, false},
	} {
		got, found, err := sumMetric(strings.NewReader(text), tc.name)
		if err != nil || got != tc.want || found != tc.found {
			t.Errorf("sumMetric(%s) = %v, %v, %v; want %v, %v", tc.name, got, found, err, tc.want, tc.found)
		}
	}
	if _, _, err := sumMetric(strings.NewReader("hookline_x{a=\"b\" 1\n"), "hookline_x"); err == nil {
		t.Error("a malformed sample was accepted")
	}
}

func TestParseCPUInfo(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if model, n := parseCPUInfo(info); model != "AMD EPYC 7B13" || n != 2 {
		t.Errorf("parseCPUInfo = %q, %d", model, n)
	}
	if model, n := parseCPUInfo("processor : 0\n"); model != "unknown" || n != 1 {
		t.Errorf("parseCPUInfo without a model = %q, %d", model, n)
	}
}

func TestProcFields(t *testing.T) {
	if got := parseMemTotal("MemTotal:       24684000 kB\nMemFree: 1 kB\n"); got != 24684000*1024 {
		t.Errorf("MemTotal = %d", got)
	}
	m, err := parseStatusMemory("Name:\tdispatcher\nVmHWM:\t  81234 kB\nVmRSS:\t   70000 kB\n")
	if err != nil || m.HWM != 81234*1024 || m.RSS != 70000*1024 {
		t.Errorf("parseStatusMemory = %+v, %v", m, err)
	}
	if _, err := parseStatusMemory("Name:\tkthreadd\n"); err == nil {
		t.Error("a status without memory fields was accepted")
	}
}

func TestMountOf(t *testing.T) {
	mounts := `/dev/vda / ext4 rw 0 0
tmpfs /tmp tmpfs rw 0 0
/dev/vdb /tmpdata xfs rw 0 0
proc /proc proc rw 0 0
`
	for _, tc := range []struct{ path, dev, mnt string }{
		{"/tmp/bench", "tmpfs", "/tmp"},
		{"/tmp", "tmpfs", "/tmp"},
		{"/tmpdata/q", "/dev/vdb", "/tmpdata"},
		{"/work/q", "/dev/vda", "/"},
	} {
		dev, mnt, _, ok := mountOf(mounts, tc.path)
		if !ok || dev != tc.dev || mnt != tc.mnt {
			t.Errorf("mountOf(%s) = %s %s %v, want %s %s", tc.path, dev, mnt, ok, tc.dev, tc.mnt)
		}
	}
}

func TestPayloadAndBodies(t *testing.T) {
	p := payload(512, 7)
	if len(p) != 512 || !strings.HasPrefix(string(p), `{"seq":7,"pad":"x`) {
		t.Errorf("payload = %d bytes %.30s", len(p), p)
	}
	ev := newEvent("run", 3, "bench.thru.created", 64)
	if got := string(ev.appendJSON(nil)); got != `{"id":"run-3","type":"bench.thru.created","data":`+string(ev.Data)+`}` {
		t.Errorf("appendJSON = %s", got)
	}
}
