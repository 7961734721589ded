package playground

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/utils/clock"
)

// lines is a goroutine-safe writer collecting what the supervisor says.
type lines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSupervisedRestartsWhatDies kills a supervised process, as a user
// would kill the playground's dispatcher, and checks that it is started
// again with the same command line, that one line says so, and that Stop
// then stops the restarted process and keeps it down.
func TestSupervisedRestartsWhatDies(t *testing.T) {
	dir := t.TempDir()
	starts := filepath.Join(dir, "starts")
	// Appends its pid to starts, and exits 0 on SIGTERM, as the dispatcher
	// does.
	script := fmt.Sprintf(`echo $$ >> %q; trap 'kill $!; exit 0' TERM; sleep 600 & wait`, starts)
	var out lines
	s, err := Supervise("sleeper", filepath.Join(dir, "sleeper.log"), "/bin/sh", []string{"-c", script}, &out, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = s.Stop(time.Second)
		}
	})
	// The shell has written its pid (the file exists as soon as it is
	// opened for the write, before the pid is in it).
	waitForLines(t, starts, 1)
	first := s.PID()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for s.Restarts() < 1 {
		time.Sleep(20 * time.Millisecond)
	}
	second := s.PID()
	if second == first {
		t.Fatalf("the restarted process has the old pid %d", first)
	}
	want := regexp.MustCompile(fmt.Sprintf(`^The sleeper \(pid %d\) exited \(signal: killed\); restarted it after 1s as pid %d, same ports and data \(restart 1, log \S+/sleeper\.log\)\n$`, first, second))
	if !want.MatchString(out.String()) {
		t.Errorf("supervisor said %q, want one line matching %s", out.String(), want)
	}
	// The same command line ran twice: the restarted process wrote too.
	waitForLines(t, starts, 2)

	stopped = true
	if err := s.Stop(10 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := syscall.Kill(second, 0); err == nil {
		t.Errorf("the restarted process %d still runs after Stop", second)
	}
	if s.Restarts() != 1 || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("restarted again after Stop: %d restarts, said %q", s.Restarts(), out.String())
	}
}

// TestRestartBackoff checks the kubelet-like backoff: doubling from a
// second, capped at 30 s.
func TestRestartBackoff(t *testing.T) {
	b := newRestartBackoff()
	var got []time.Duration
	for range 7 {
		got = append(got, b.Step())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("delays %v, want %v", got, want)
	}
}

// waitForLines waits until the file at path holds n lines.
func waitForLines(t *testing.T, path string, n int) {
	t.Helper()
	for {
		data, err := os.ReadFile(path)
		if err == nil && strings.Count(string(data), "\n") >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
