// Command hookline-dev is `make dev`: a local playground with nothing but Go
// installed. It starts a real kube-apiserver and etcd with the Hookline
// CRDs, runs the manager and one dispatcher as local processes with the
// permissions an install grants them, a demo receiver that verifies every
// delivery's signature, applies sample resources, publishes a few events
// with a ServiceAccount token and shows the subscriptions' status as
// `kubectl get whsub` does. It then keeps running, printing deliveries as
// they arrive, until Ctrl-C or SIGTERM, and stops everything it started.
//
// Run it from inside the repository: it builds cmd/manager and
// cmd/dispatcher from source.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

func main() {
	// envtest logs through controller-runtime, which warns (with a stack)
	// when no logger is set; the playground says what it does itself.
	ctrllog.SetLogger(logr.Discard())

	out := &lockedWriter{w: os.Stdout}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		fmt.Fprintln(out, "\nStopping the playground...")
		cancel()
		// Later signals must not kill the playground half-way through
		// stopping its processes, which would leave them running.
		for range signals {
			fmt.Fprintln(out, "Still stopping: processes that do not exit in time are killed")
		}
	}()

	err := run(ctx, out, os.Args[1:])
	var stopErr *stopError
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &stopErr), err != nil && ctx.Err() == nil:
		// A process that would not stop, or anything failing before an
		// interruption.
		fmt.Fprintln(os.Stderr, "hookline-dev:", err)
		os.Exit(1)
	default:
		// Stopped by a signal, maybe half-way through setting up, which
		// then fails with the interruption: everything was stopped.
		fmt.Fprintln(out, "Stopped")
	}
}

func run(ctx context.Context, out io.Writer, args []string) error {
	flags := flag.NewFlagSet("hookline-dev", flag.ContinueOnError)
	flags.SetOutput(os.Stderr)
	binDir := flags.String("bin-dir", "", "Directory the manager and dispatcher are built into; defaults to bin/ in the repository.")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "Usage: hookline-dev [--bin-dir DIR]\n\nRuns a local Hookline playground until Ctrl-C; see the README's \"Try it locally\".")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		flags.Usage()
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	cwd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("finding the working directory: %w", err)
	}
	pg, err := newPlayground(out, cwd, *binDir)
	if err != nil {
		return err
	}
	return pg.run(ctx)
}

// lockedWriter serialises writes, so the lines of the receiver and of the
// setup steps never interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
