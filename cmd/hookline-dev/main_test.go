package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/playground"
	"github.com/hookline/hookline/test/testenv"
)

// The client reading the status logs through controller-runtime, which
// warns (with a stack) when no logger is set.
func init() { ctrllog.SetLogger(logr.Discard()) }

// TestPlayground builds hookline-dev and runs it twice, as `make dev` does,
// each time until it is ready, then stops it with SIGINT. It checks what a
// user sees (verified deliveries, the kubectl-style table, the status
// through the printed kubeconfig) and that nothing it started outlives it.
// On the first run it also kills the dispatcher, which must come back on
// the same ports and deliver what was published, and runs every
// kubectl hookline example the README and the playground show. The second
// run shares the first one's binary directory, so Go's build cache leaves
// little to rebuild.
func TestPlayground(t *testing.T) {
	tools := t.TempDir()
	bin := filepath.Join(tools, "hookline-dev")
	for pkg, out := range map[string]string{".": bin, "../kubectl-hookline": filepath.Join(tools, "kubectl-hookline")} {
		build := exec.Command("go", "build", "-o", out, pkg)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}
	binDir := t.TempDir()
	var took [2]time.Duration
	for i, name := range []string{"first run", "second run"} {
		if !t.Run(name, func(t *testing.T) {
			took[i] = runPlayground(t, bin, binDir, func(t *testing.T, pg *session) {
				if i == 0 {
					pg.killDispatcher(t)
					pg.runPluginExamples(t, tools)
				}
			})
		}) {
			return
		}
	}
	t.Logf("ready after %s on the first run, %s on the second", took[0].Round(time.Second), took[1].Round(time.Second))
}

// session is one running playground, as its output describes it.
type session struct {
	out        *output
	exited     <-chan struct{}
	exitErr    *error
	ingest     string
	token      string
	kubeconfig string
}

// waitLine waits for a line matching re and returns its submatches. There
// is no deadline: the test binary's -timeout is the guard.
func (s *session) waitLine(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	for {
		for _, l := range s.out.lines() {
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		}
		select {
		case <-s.out.changed:
		case <-s.exited:
			t.Fatalf("hookline-dev exited (%v) before printing a line matching %s", *s.exitErr, re)
		}
	}
}

// killDispatcher publishes an event, kills the dispatcher with SIGKILL at
// once, and checks that the playground restarts it, saying so in one line,
// on the same ingest port, and that the event is delivered. Another event,
// published to the URL printed at the start, is delivered too.
func (s *session) killDispatcher(t *testing.T) {
	ctx := context.Background()
	pid, err := strconv.Atoi(s.out.value(t, regexp.MustCompile(`^  dispatcher: pid (\d+),`)))
	if err != nil {
		t.Fatal(err)
	}
	before := playground.Event{ID: "order-before-kill", Type: "order.created", Data: map[string]any{"order": 2001}}
	if _, err := playground.Publish(ctx, s.ingest, s.token, "demo", before); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the dispatcher: %v", err)
	}
	restarted := s.waitLine(t, regexp.MustCompile(fmt.Sprintf(`^The dispatcher \(pid %d\) exited \(signal: killed\); restarted it after \S+ as pid (\d+), same ports and data \(restart 1, log \S+\)$`, pid)))
	if restarted[1] == strconv.Itoa(pid) {
		t.Errorf("the restarted dispatcher has the old pid")
	}
	s.waitLine(t, regexp.MustCompile(`^✓ verified order\.created id=order-before-kill from subscription orders$`))
	after := playground.Event{ID: "order-after-kill", Type: "order.created", Data: map[string]any{"order": 2002}}
	// The restarted dispatcher may still be opening its queue: 503 until
	// then, as in a cluster.
	for {
		_, err := playground.Publish(ctx, s.ingest, s.token, "demo", after)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "503") && !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("publishing to the restarted dispatcher: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.waitLine(t, regexp.MustCompile(`^✓ verified order\.created id=order-after-kill from subscription orders$`))
}

// runPluginExamples runs every kubectl hookline example of the playground
// exactly as written, as kubectl runs the plugin (kubectl-hookline on the
// PATH), with the printed kubeconfig, and checks each one's outcome.
func (s *session) runPluginExamples(t *testing.T, pluginDir string) {
	want := map[string]struct {
		exit int
		says *regexp.Regexp
	}{
		"kubectl hookline status":               {0, regexp.MustCompile(`(?m)^flaky +False +False .*\n^orders +True +True `)},
		"kubectl hookline status flaky -o wide": {0, regexp.MustCompile(`(?m)^NAME .* DELIVERED +FAILED ATTEMPTS +DEAD-LETTERED +REPLAYABLE .*\n^flaky +False +False .* EndpointUnhealthy +\d+ +0 +[1-9]\d* +[1-9]\d* +[1-9]\d* `)},
		`kubectl hookline send --service-account demo-producer --type order.created --data '{"order":1004,"total":12}'`: {0, regexp.MustCompile(`^accepted \S+\n$`)},
		"kubectl hookline send --service-account demo-operator --to orders":                                             {0, regexp.MustCompile(`^delivered \S+ to demo/orders: HTTP 204 in \S+, signed with the current key \S+\n$`)},
		"kubectl hookline replay flaky --since 1h --service-account demo-operator":                                      {3, regexp.MustCompile(`(?s)^replayed [1-9]\d* dead-lettered deliver(y|ies) of demo/flaky\n.*dead-lettered again`)},
		"kubectl hookline rotate demo-signing":                                                                          {0, regexp.MustCompile(`^rotated demo/demo-signing: \S+ → \S+ `)},
	}
	// The restarted dispatcher reports again what it serves: examples run
	// once both subscriptions are back where the playground left them,
	// with flaky's dead letters kept for the replay example.
	c := kubeClient(t, s.kubeconfig)
	for {
		orders, flaky := &hooklinev1.WebhookSubscription{}, &hooklinev1.WebhookSubscription{}
		if c.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: "orders"}, orders) == nil &&
			c.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: "flaky"}, flaky) == nil &&
			meta.IsStatusConditionTrue(orders.Status.Conditions, hooklinev1.ConditionReady) &&
			meta.IsStatusConditionFalse(flaky.Status.Conditions, hooklinev1.ConditionEndpointHealthy) &&
			flaky.Status.Delivery != nil && flaky.Status.Delivery.Replayable > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	examples := playground.PluginExamples()
	if len(examples) != len(want) {
		t.Errorf("%d examples, %d checked here", len(examples), len(want))
	}
	for _, e := range examples {
		w, ok := want[e.Command]
		if !ok {
			t.Errorf("example %q is not checked", e.Command)
			continue
		}
		cmd := exec.Command("bash", "-c", strings.Replace(e.Command, "kubectl hookline", "kubectl-hookline", 1))
		cmd.Env = append(os.Environ(), "KUBECONFIG="+s.kubeconfig, "PATH="+pluginDir+string(os.PathListSeparator)+os.Getenv("PATH"))
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if exitErr, ok := errors.AsType[*exec.ExitError](err); ok {
			code = exitErr.ExitCode()
		} else if err != nil {
			t.Fatalf("running %q: %v", e.Command, err)
		}
		if code != w.exit || !w.says.MatchString(stdout.String()+stderr.String()) {
			t.Errorf("%s\nexited %d (want %d), printed:\n%s%s\nwant a match of %s", e.Command, code, w.exit, stdout.String(), stderr.String(), w.says)
		}
	}
	// The rotated key signs the next deliveries, which still verify.
	s.waitLine(t, regexp.MustCompile(`^✓ verified order\.created id=\S+ from subscription orders$`))
}

// runPlayground runs the playground until it is ready, checks it, runs
// more checks on it, stops it and returns how long it took to be ready.
func runPlayground(t *testing.T, bin, binDir string, more func(*testing.T, *session)) time.Duration {
	start := time.Now()
	// The working directory is this package's: the playground finds the
	// repository by walking up.
	cmd := exec.Command(bin, "--bin-dir="+binDir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := &output{changed: make(chan struct{}, 1)}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.add(sc.Text())
		}
	}()
	exited := make(chan struct{})
	var exitErr error
	go func() {
		<-scanned
		exitErr = cmd.Wait()
		close(exited)
	}()
	var descendants []proc
	t.Cleanup(func() {
		// Only when the test failed half-way: stop whatever still runs.
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(time.Until(testenv.GiveUpAt(t))):
				_ = cmd.Process.Kill()
			}
		}
		for _, p := range descendants {
			if p.alive() {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("hookline-dev output:\n%s\nstderr:\n%s", out.text(), stderr.String())
		}
	})

	// Ready (the whole block that says so, which ends with the line about
	// deliveries), and at least one delivery verified.
	// No deadline: a slow machine takes longer, and the test binary's
	// -timeout is the guard.
	for !out.has(regexp.MustCompile(`^Playground ready`)) || !out.has(regexp.MustCompile(`^Deliveries are printed as they arrive`)) || !out.has(verifiedLine) {
		select {
		case <-out.changed:
		case <-exited:
			t.Fatalf("hookline-dev exited before it was ready: %v", exitErr)
		}
	}
	ready := time.Since(start)
	workDir := out.value(t, regexp.MustCompile(`working directory \(removed on exit\): (\S+)$`))
	kubeconfig := out.value(t, regexp.MustCompile(`^  export KUBECONFIG=(\S+)$`))
	if filepath.Dir(kubeconfig) != workDir {
		t.Errorf("kubeconfig %s is outside the working directory %s", kubeconfig, workDir)
	}
	tokenFile := out.value(t, regexp.MustCompile(`Bearer \$\(cat (\S+)\)`))
	if token, err := os.ReadFile(tokenFile); err != nil || len(token) == 0 {
		t.Errorf("the producer token file %s: %q, %v", tokenFile, token, err)
	}
	for _, l := range out.lines() {
		if strings.HasPrefix(l, "✓") && !verifiedLine.MatchString(l) {
			t.Errorf("unexpected delivery line %q", l)
		}
	}
	checkTable(t, out.lines())

	// Everything it started: its descendants, whose command lines point
	// into the working directory (kube-apiserver's certificates, etcd's
	// data, the manager's and dispatcher's kubeconfigs).
	descendants = descendantsOf(t, cmd.Process.Pid)
	for _, want := range []string{"kube-apiserver", "etcd", "manager", "dispatcher"} {
		found := false
		for _, p := range descendants {
			if filepath.Base(p.exe) == want && strings.Contains(p.cmdline, workDir) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s among the processes started: %v", want, descendants)
		}
	}
	for _, name := range []string{"manager", "dispatcher"} {
		pid, err := strconv.Atoi(out.value(t, regexp.MustCompile(`^  `+name+`: pid (\d+),`)))
		if err != nil || !containsPID(descendants, pid) {
			t.Errorf("the %s pid printed, %d, is not a running child: %v", name, pid, err)
		}
	}

	// The status, read with the printed kubeconfig.
	c := kubeClient(t, kubeconfig)
	ctx := context.Background()
	for name, want := range map[string]metav1.ConditionStatus{"orders": metav1.ConditionTrue, "flaky": metav1.ConditionFalse} {
		sub := &hooklinev1.WebhookSubscription{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: name}, sub); err != nil {
			t.Fatal(err)
		}
		if got := meta.FindStatusCondition(sub.Status.Conditions, hooklinev1.ConditionEndpointHealthy); got == nil || got.Status != want {
			t.Errorf("EndpointHealthy of %s is %+v, want %s", name, got, want)
		}
	}

	if more != nil {
		pg := &session{out: out, exited: exited, exitErr: &exitErr, kubeconfig: kubeconfig,
			ingest: out.value(t, regexp.MustCompile(`^  ingest API: +(http://\S+)$`))}
		token, err := os.ReadFile(tokenFile)
		if err != nil {
			t.Fatal(err)
		}
		pg.token = strings.TrimSpace(string(token))
		more(t, pg)
		// What runs now, restarted processes included.
		descendants = descendantsOf(t, cmd.Process.Pid)
	}

	// Ctrl-C stops everything, restarted processes included, and removes
	// the working directory.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-exited
	if exitErr != nil {
		t.Fatalf("hookline-dev exited with %v after SIGINT", exitErr)
	}
	for _, p := range descendants {
		if p.alive() {
			t.Errorf("%s (pid %d) outlived hookline-dev", p.exe, p.pid)
		}
	}
	if left := processesMentioning(t, workDir); len(left) > 0 {
		t.Errorf("processes still point into the working directory: %v", left)
	}
	if _, err := os.Stat(workDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the working directory %s is still there: %v", workDir, err)
	}
	if !out.has(regexp.MustCompile(`^Stopped$`)) {
		t.Errorf("no final Stopped line")
	}
	return ready
}

var verifiedLine = regexp.MustCompile(`^✓ verified \S+ id=\S+ from subscription orders$`)

// checkTable checks the `kubectl get whsub` table: the columns the CRD
// declares, aligned, with the state each subscription must reach.
func checkTable(t *testing.T, lines []string) {
	t.Helper()
	header := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "NAME ") {
			header = i
		}
	}
	if header < 0 || header+2 >= len(lines) {
		t.Errorf("no table printed")
		return
	}
	columns := regexp.MustCompile(`^NAME +URL +EVENT TYPES +READY +REASON +HEALTHY +AGE$`)
	if !columns.MatchString(lines[header]) {
		t.Errorf("table header %q", lines[header])
	}
	rows := map[string]*regexp.Regexp{
		"flaky":  regexp.MustCompile(`^flaky +http://127\.0\.0\.1:\d+/fail/flaky +order\.created +False +EndpointUnhealthy +False +\d+s$`),
		"orders": regexp.MustCompile(`^orders +http://127\.0\.0\.1:\d+/hooks/orders +order\.\* +True +Succeeded +True +\d+s$`),
	}
	for i, name := range []string{"flaky", "orders"} {
		row := lines[header+1+i]
		if !rows[name].MatchString(row) {
			t.Errorf("row %d of the table is %q, want %s", i+1, row, rows[name])
		}
		// Aligned: each column starts where its header does.
		if strings.Index(row, "http") != strings.Index(lines[header], "URL") {
			t.Errorf("row %q is not aligned with %q", row, lines[header])
		}
	}
}

func kubeClient(t *testing.T, kubeconfig string) client.Client {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// output collects the playground's stdout lines.
type output struct {
	mu      sync.Mutex
	all     []string
	changed chan struct{}
}

func (o *output) add(line string) {
	o.mu.Lock()
	o.all = append(o.all, line)
	o.mu.Unlock()
	select {
	case o.changed <- struct{}{}:
	default:
	}
}

func (o *output) lines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.all...)
}

func (o *output) text() string { return strings.Join(o.lines(), "\n") }

func (o *output) has(re *regexp.Regexp) bool {
	for _, l := range o.lines() {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

// value is the first submatch of re in the output.
func (o *output) value(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	for _, l := range o.lines() {
		if m := re.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no line matches %s", re)
	return ""
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a process as /proc shows it. Its start time tells it from a
// later process that reuses the pid.
type proc struct {
	pid, ppid int
	start     string
	exe       string
	cmdline   string
}

func (p proc) String() string { return fmt.Sprintf("%d %s", p.pid, p.exe) }

// alive says whether the process still exists (a zombie counts: it has
// not been reaped).
func (p proc) alive() bool {
	now, ok := readProc(p.pid)
	return ok && now.start == p.start
}

func readProc(pid int) (proc, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	// The command name, in parentheses, may hold spaces: the fields
	// counted from 3 (state) start after the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return proc{}, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(fields[1])
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	return proc{pid: pid, ppid: ppid, start: fields[19], exe: args[0], cmdline: strings.Join(args, " ")}, true
}

func allProcs(t *testing.T) []proc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("listing processes: %v", err)
	}
	var out []proc
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if p, ok := readProc(pid); ok {
				out = append(out, p)
			}
		}
	}
	return out
}

func descendantsOf(t *testing.T, root int) []proc {
	t.Helper()
	procs := allProcs(t)
	in := map[int]bool{root: true}
	var out []proc
	// Parents may be listed after their children: repeat until stable.
	for changed := true; changed; {
		changed = false
		for _, p := range procs {
			if !in[p.pid] && in[p.ppid] {
				in[p.pid] = true
				out = append(out, p)
				changed = true
			}
		}
	}
	return out
}

func processesMentioning(t *testing.T, s string) []proc {
	t.Helper()
	var out []proc
	for _, p := range allProcs(t) {
		if strings.Contains(p.cmdline, s) {
			out = append(out, p)
		}
	}
	return out
}

func containsPID(procs []proc, pid int) bool {
	for _, p := range procs {
		if p.pid == pid {
			return true
		}
	}
	return false
}
