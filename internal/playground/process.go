package playground

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a child process (the manager or the dispatcher) whose output
// goes to a log file. It runs in a process group of its own, so a Ctrl-C in
// the terminal reaches only the playground, which then stops its children
// in order; on Linux the kernel also kills it should the playground die
// without stopping it.
type Process struct {
	// Name says what the process is, in messages.
	Name string
	// LogPath is the file its stdout and stderr go to.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartProcess starts bin with args, appending its output to logPath.
func StartProcess(name, logPath, bin string, args ...string) (*Process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the %s log: %w", name, err)
	}
	// The child has its own copy of the descriptor.
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitError is how the process ended: nil for a clean exit. Valid once Done
// is closed.
func (p *Process) ExitError() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM to the process group and waits up to grace for the
// process to exit, then kills the group. It returns an error when the
// process had to be killed or exited unsuccessfully.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.exitError()
	default:
	}
	pgid := -p.PID()
	if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping the %s: %w", p.Name, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		// Whatever it started in its group goes with it.
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		return p.exitError()
	case <-timer.C:
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("the %s did not stop within %s of SIGTERM and was killed", p.Name, grace)
	}
}

func (p *Process) exitError() error {
	if p.err != nil {
		return fmt.Errorf("the %s exited: %w", p.Name, p.err)
	}
	return nil
}

// DispatcherAddresses are the addresses a dispatcher listens on.
type DispatcherAddresses struct {
	Ingest, Health, Metrics string
}

// ParseDispatcherStart finds the dispatcher's "Starting" log entry (JSON,
// one per line) in logs and returns the addresses it names. Started with
// port 0 the dispatcher picks free ports itself, which races nothing, and
// this is how the playground learns them.
func ParseDispatcherStart(logs []byte) (DispatcherAddresses, bool) {
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var entry struct{ Msg, Ingest, Health, Metrics string }
		if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Msg == "Starting" && entry.Ingest != "" {
			return DispatcherAddresses{Ingest: entry.Ingest, Health: entry.Health, Metrics: entry.Metrics}, true
		}
	}
	return DispatcherAddresses{}, false
}

// FreeLocalAddrs returns n distinct free addresses on 127.0.0.1. The
// playground picks its dispatcher's ports once, so a restarted dispatcher
// listens where the first one did and the printed URLs stay right.
func FreeLocalAddrs(n int) ([]string, error) {
	var addrs []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}
