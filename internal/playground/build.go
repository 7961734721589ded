package playground

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/utils/clock"
)

// ModulePath is the module the playground builds from.
const ModulePath = "github.com/hookline/hookline"

// FindRepoRoot walks up from dir to the directory whose go.mod declares
// ModulePath: the playground builds the binaries from source, so it must run
// inside a clone.
func FindRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", dir, err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		switch {
		case err == nil && declaresModule(data, ModulePath):
			return dir, nil
		case err != nil && !errors.Is(err, os.ErrNotExist):
			return "", fmt.Errorf("reading %s: %w", filepath.Join(dir, "go.mod"), err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s in this directory or above: run from inside the Hookline repository", ModulePath)
		}
		dir = parent
	}
}

// declaresModule says whether the go.mod text data declares module path.
func declaresModule(data []byte, path string) bool {
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "module" && strings.Trim(fields[1], `"`) == path {
			return true
		}
	}
	return false
}

// QuietInterval is how long a long-running step may stay silent before
// the playground says it is still working.
const QuietInterval = 15 * time.Second

// EnvtestAssets runs hack/envtest.sh, which builds kube-apiserver and etcd
// from source on first use (10 to 25 minutes on two cores), or waits for
// another process's build of them, and prints the directory
// holding them, and returns that directory. The script's progress lines
// (its stderr) are copied to out as they come, and whenever it stays silent
// for QuietInterval a line says it is still working, so the first run never
// looks hung. Cancelling ctx stops the script and its builds.
func EnvtestAssets(ctx context.Context, root string, out io.Writer, clk clock.WithTicker) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "envtest.sh"))
	cmd.Dir = root
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", fmt.Errorf("piping hack/envtest.sh's output: %w", err)
	}
	// Its own process group, so that stopping it reaches the go builds it
	// runs as well.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("running hack/envtest.sh: %w", err)
	}

	// The script's lines and the progress lines come from different
	// goroutines.
	out = &syncWriter{w: out}
	var mu sync.Mutex
	last := clk.Now()
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			last = clk.Now()
			mu.Unlock()
			fmt.Fprintf(out, "  %s\n", sc.Text())
		}
	}()
	started := clk.Now()
	ticker := clk.NewTicker(QuietInterval / 3)
	defer ticker.Stop()
	for waiting := true; waiting; {
		select {
		case <-lines:
			waiting = false
		case <-ctx.Done():
			// Wait stops the script's process group and, after WaitDelay,
			// stops reading what its builds still write.
			waiting = false
		case <-ticker.C():
			mu.Lock()
			quiet := clk.Since(last) >= QuietInterval
			if quiet {
				last = clk.Now()
			}
			mu.Unlock()
			if quiet {
				// Neutral: the script may be building, or waiting for
				// another process's build, and says which itself.
				fmt.Fprintf(out, "  still running hack/envtest.sh, %s so far...\n",
					clk.Since(started).Truncate(time.Second))
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("building the API server binaries: %w", ctx.Err())
		}
		return "", fmt.Errorf("building the API server binaries with hack/envtest.sh: %w", err)
	}
	dir := strings.TrimSpace(stdout.String())
	if dir == "" {
		return "", errors.New("hack/envtest.sh printed no directory")
	}
	return dir, nil
}

// BuildBinaries builds cmd/manager and cmd/dispatcher into binDir with one
// go build, whose cache makes later runs take a second or so, and returns
// their paths. The compiler's output goes to out, and every QuietInterval
// a line says the build still runs: with empty caches it takes minutes.
func BuildBinaries(ctx context.Context, root, binDir string, out io.Writer, clk clock.WithTicker) (manager, dispatcher string, err error) {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", "", fmt.Errorf("creating %s: %w", binDir, err)
	}
	// The compiler's output and the progress lines come from different
	// goroutines.
	out = &syncWriter{w: out}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", binDir+string(filepath.Separator), "./cmd/manager", "./cmd/dispatcher")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return "", "", fmt.Errorf("building cmd/manager and cmd/dispatcher: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	started := clk.Now()
	ticker := clk.NewTicker(QuietInterval)
	defer ticker.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return "", "", fmt.Errorf("building cmd/manager and cmd/dispatcher: %w", err)
			}
			return filepath.Join(binDir, "manager"), filepath.Join(binDir, "dispatcher"), nil
		case <-ticker.C():
			fmt.Fprintf(out, "  still compiling the manager and the dispatcher, %s so far...\n", clk.Since(started).Truncate(time.Second))
		}
	}
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
