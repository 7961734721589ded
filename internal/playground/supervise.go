package playground

import (
	"fmt"
	"io"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
)

// Restart backoff, as a kubelet's CrashLoopBackOff but shorter, for a
// playground: the first restart after a second, doubling up to 30 s, back
// to a second once a process has run for a minute.
const (
	restartInitial    = time.Second
	restartCap        = 30 * time.Second
	restartResetAfter = time.Minute
)

// Supervised is a child process kept running as a kubelet keeps a
// container running: when it exits on its own it is started again, with
// the same command line (so the same ports and data directory), after a
// backoff that grows while it keeps dying. Each restart is told in one line.
type Supervised struct {
	// Name says what the process is, in messages.
	Name string
	// LogPath is the file its output is appended to, across restarts.
	LogPath string

	bin   string
	args  []string
	out   io.Writer
	clock clock.Clock

	mu       sync.Mutex
	cur      *Process
	restarts int

	stopping chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// Supervise starts bin with args, its output appended to logPath, and
// restarts it whenever it exits until Stop. Restarts are told on out.
func Supervise(name, logPath, bin string, args []string, out io.Writer, clk clock.Clock) (*Supervised, error) {
	p, err := StartProcess(name, logPath, bin, args...)
	if err != nil {
		return nil, err
	}
	s := &Supervised{Name: name, LogPath: logPath, bin: bin, args: args, out: out, clock: clk,
		cur: p, stopping: make(chan struct{}), done: make(chan struct{})}
	go s.supervise()
	return s, nil
}

// PID is the process id of the current process.
func (s *Supervised) PID() int { return s.current().PID() }

// Restarts counts the restarts so far.
func (s *Supervised) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

func (s *Supervised) current() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func newRestartBackoff() wait.Backoff {
	return wait.Backoff{Duration: restartInitial, Factor: 2, Cap: restartCap, Steps: 1 << 30}
}

func (s *Supervised) supervise() {
	defer close(s.done)
	backoff := newRestartBackoff()
	started := s.clock.Now()
	for {
		p := s.current()
		select {
		case <-s.stopping:
			return
		case <-p.Done():
		}
		if s.clock.Since(started) >= restartResetAfter {
			backoff = newRestartBackoff()
		}
		delay := backoff.Step()
		exit := p.ExitError()
		for {
			select {
			case <-s.stopping:
				return
			case <-s.clock.After(delay):
			}
			next, err := StartProcess(s.Name, s.LogPath, s.bin, s.args...)
			if err != nil {
				delay = backoff.Step()
				fmt.Fprintf(s.out, "The %s could not be restarted (%v); trying again in %s\n", s.Name, err, delay)
				continue
			}
			s.mu.Lock()
			s.cur = next
			s.restarts++
			n := s.restarts
			s.mu.Unlock()
			started = s.clock.Now()
			fmt.Fprintf(s.out, "The %s (pid %d) exited (%s); restarted it after %s as pid %d, same ports and data (restart %d, log %s)\n",
				s.Name, p.PID(), exitReason(exit), delay, next.PID(), n, s.LogPath)
			break
		}
	}
}

// exitReason says how a process ended, for the restart line.
func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Stop ends the supervision, then stops the current process: SIGTERM, and
// SIGKILL after grace. A process that had died and waits for its restart
// is not started again. The error is the current process's, as
// Process.Stop reports it; an exit already told by a restart line (the
// process died on its own and supervision was waiting to restart it) is
// not an error of stopping.
func (s *Supervised) Stop(grace time.Duration) error {
	s.stopOnce.Do(func() { close(s.stopping) })
	<-s.done
	p := s.current()
	select {
	case <-p.Done():
		// It died on its own: the supervisor had not restarted it yet.
		return nil
	default:
	}
	return p.Stop(grace)
}
