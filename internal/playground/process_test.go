package playground

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitForFile polls until path exists, since a child writes it in its own
// time.
func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute) // far above any plausible wait
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running says whether pid is a live process: a zombie waiting for
// init to reap it is not.
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// groupGone says whether no live process is left in the process group
// pgid, polling a while since a killed process takes a moment to die.
func groupGone(t *testing.T, pgid int) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute) // far above any plausible wait
	for {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatal(err)
		}
		left := false
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if g, err := syscall.Getpgid(pid); err == nil && g == pgid && running(pid) {
				left = true
			}
		}
		if !left {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProcessStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	log, ready := filepath.Join(dir, "out.log"), filepath.Join(dir, "ready")
	p, err := StartProcess("worker", log, "/bin/sh", "-c",
		`trap 'echo stopping; exit 0' TERM; echo started; : > "$0"; while :; do sleep 0.05; done`, ready)
	if err != nil {
		t.Fatal(err)
	}
	waitForFile(t, ready)
	// Its own process group, so a terminal's Ctrl-C does not reach it.
	if pgid, err := syscall.Getpgid(p.PID()); err != nil || pgid != p.PID() {
		t.Errorf("process group %d, %v; want its own, %d", pgid, err, p.PID())
	}
	if err := p.Stop(30 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	// The shell may also report its sleep as terminated.
	if got, _ := os.ReadFile(log); !strings.HasPrefix(string(got), "started\n") || !strings.HasSuffix(string(got), "stopping\n") {
		t.Errorf("log %q, want the output of the trap after the start", got)
	}
	if !groupGone(t, p.PID()) {
		t.Errorf("processes of the group are left")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("stopping again: %v", err)
	}
}

// A process that ignores SIGTERM is killed after the grace period, with
// everything it started in its group.
func TestProcessKilledAfterGrace(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	p, err := StartProcess("stubborn", filepath.Join(dir, "out.log"), "/bin/sh", "-c",
		`trap '' TERM; sleep 1000 & echo $! > "$0.child"; : > "$0"; wait`, ready)
	if err != nil {
		t.Fatal(err)
	}
	waitForFile(t, ready)
	raw, err := os.ReadFile(ready + ".child")
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Stop(300 * time.Millisecond)
	if err == nil || err.Error() != "the stubborn did not stop within 300ms of SIGTERM and was killed" {
		t.Errorf("Stop: %v", err)
	}
	if !groupGone(t, p.PID()) {
		t.Errorf("processes of the group are left")
	}
	// The grandchild is gone.
	deadline := time.Now().Add(10 * time.Minute) // far above any plausible wait
	for running(child) {
		if time.Now().After(deadline) {
			t.Fatalf("the child %d of the killed process still runs", child)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProcessExitReported(t *testing.T) {
	p, err := StartProcess("quitter", filepath.Join(t.TempDir(), "out.log"), "/bin/sh", "-c", "exit 3")
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	var exit *exec.ExitError
	if err := p.ExitError(); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("ExitError = %v, want exit status 3", err)
	}
	if err := p.Stop(time.Second); err == nil || err.Error() != "the quitter exited: exit status 3" {
		t.Errorf("Stop after exiting: %v", err)
	}
}

func TestStartProcessFailures(t *testing.T) {
	dir := t.TempDir()
	if _, err := StartProcess("ghost", filepath.Join(dir, "out.log"), filepath.Join(dir, "no-such-binary")); err == nil || !strings.HasPrefix(err.Error(), "starting the ghost: ") {
		t.Errorf("missing binary: %v", err)
	}
	if _, err := StartProcess("nowhere", filepath.Join(dir, "missing", "out.log"), "/bin/true"); err == nil || !strings.HasPrefix(err.Error(), "opening the nowhere log: ") {
		t.Errorf("log in a missing directory: %v", err)
	}
}

func TestParseDispatcherStart(t *testing.T) {
	starting := `{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"Starting","version":"dev","ingest":"127.0.0.1:1001","health":"127.0.0.1:1002","metrics":"127.0.0.1:1003"}`
	for _, tc := range []struct {
		name string
		logs string
		want DispatcherAddresses
		ok   bool
	}{
		{name: "empty"},
		{name: "other entries only", logs: `{"msg":"Queue open"}` + "\n" + "not json\n"},
		{name: "Starting without addresses", logs: `{"msg":"Starting","version":"dev"}` + "\n"},
		{name: "another message naming addresses", logs: `{"msg":"Started","ingest":"127.0.0.1:1"}` + "\n"},
		{
			name: "after other lines, without a final newline",
			logs: `{"msg":"Queue open"}` + "\nW0101 klog line\n" + starting,
			want: DispatcherAddresses{Ingest: "127.0.0.1:1001", Health: "127.0.0.1:1002", Metrics: "127.0.0.1:1003"},
			ok:   true,
		},
		{
			name: "after a line longer than the scanner's default buffer",
			logs: `{"msg":"` + strings.Repeat("x", 100_000) + `"}` + "\n" + starting + "\n",
			want: DispatcherAddresses{Ingest: "127.0.0.1:1001", Health: "127.0.0.1:1002", Metrics: "127.0.0.1:1003"},
			ok:   true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseDispatcherStart([]byte(tc.logs))
			if got != tc.want || ok != tc.ok {
				t.Errorf("ParseDispatcherStart = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
