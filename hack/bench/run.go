package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/hookline/hookline/internal/playground"
)

// bench is one run: its configuration, where it writes, and what it has
// started.
type bench struct {
	cfg      config
	out      io.Writer // the machine description and the table
	progress io.Writer // what the run is doing, and details
	dir      string

	start    time.Time
	cluster  *cluster
	receiver *receiver
	// managerIdle is the manager's memory before any subscription of the
	// control-plane sections exists.
	managerIdle memory

	rows    []row
	details []string
	// profile receives the CPU profile of cfg.ProfileSection.
	profile *os.File
}

// profiled runs the measurements of a section, under the CPU profiler when
// that section is the one to profile.
func (b *bench) profiled(section int, measure func() []row) []row {
	if b.cfg.ProfileSection != section || b.profile == nil {
		return measure()
	}
	if err := pprof.StartCPUProfile(b.profile); err != nil {
		fmt.Fprintf(b.progress, "Not profiling section %d: %v\n", section, err)
		return measure()
	}
	defer pprof.StopCPUProfile()
	return measure()
}

// writeHeapProfile writes the heap profile -memprofile asks for, with
// suffix added to its name, of what is live after a collection.
func (b *bench) writeHeapProfile(suffix string) (err error) {
	if b.cfg.MemProfile == "" {
		return nil
	}
	f, err := os.Create(b.cfg.MemProfile + suffix)
	if err != nil {
		return fmt.Errorf("creating the heap profile: %w", err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("writing the heap profile: %w", err)
	}
	return nil
}

func one(r row) []row { return []row{r} }

// stopDispatcher stops a dispatcher at the end of its sections. A slow stop
// is worth knowing but spoils no figure, so it is a detail, not an error.
func (b *bench) stopDispatcher(d *dispatcherProc) {
	start := time.Now()
	if err := d.stop(); err != nil {
		b.detail("Dispatcher %s: stopping it: %v", d.name, err)
		return
	}
	b.detail("Dispatcher %s stopped %s after SIGTERM", d.name, time.Since(start).Round(100*time.Millisecond))
}

// run measures every selected section and prints the machine description
// and the table to out, progress to progress. It returns the rows.
func run(ctx context.Context, cfg config, out, progress io.Writer) (rows []row, err error) {
	var profile *os.File
	if cfg.CPUProfile != "" {
		if profile, err = os.Create(cfg.CPUProfile); err != nil {
			return nil, fmt.Errorf("creating the CPU profile: %w", err)
		}
		defer func() { err = errors.Join(err, profile.Close()) }()
		if cfg.ProfileSection == 0 {
			if err := pprof.StartCPUProfile(profile); err != nil {
				return nil, fmt.Errorf("starting the CPU profile: %w", err)
			}
			defer pprof.StopCPUProfile()
		}
	}
	root, err := playground.FindRepoRoot(".")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", cfg.Dir, err)
	}
	dir, err := os.MkdirTemp(cfg.Dir, "hookline-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating the working directory: %w", err)
	}
	b := &bench{cfg: cfg, out: out, progress: progress, dir: dir, start: time.Now(), profile: profile}
	defer func() {
		if cfg.Keep {
			fmt.Fprintf(progress, "Kept the working directory %s\n", dir)
			return
		}
		err = errors.Join(err, os.RemoveAll(dir))
	}()

	fmt.Fprintf(out, "Hookline benchmarks, %s\n\n%s\n\n", time.Now().UTC().Format(time.RFC3339), describeMachine(dir))
	start := time.Now()
	err = b.measure(ctx, root)
	b.detail("Measured in %s", time.Since(start).Round(time.Second))
	// What was measured is printed even when a step failed.
	fmt.Fprintf(out, "Details:\n  %s\n\n", strings.Join(b.details, "\n  "))
	if perr := printTable(out, b.rows); perr != nil {
		err = errors.Join(err, fmt.Errorf("printing the table: %w", perr))
	}
	return b.rows, err
}

// step reports what the run does next.
func (b *bench) step(format string, args ...any) {
	fmt.Fprintf(b.progress, "==> [%4.0fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// detail records a line printed with the table.
func (b *bench) detail(format string, args ...any) {
	b.details = append(b.details, fmt.Sprintf(format, args...))
}

// add records rows; a section that failed records its rows as not
// measured, with why.
// Each is reported as soon as it is measured, so that an interrupted run
// still shows what it got.
func (b *bench) add(rs ...row) {
	for _, r := range rs {
		if r.Err != nil {
			fmt.Fprintf(b.progress, "    %s: not measured: %v\n", r.Name, r.Err)
		} else {
			fmt.Fprintf(b.progress, "    %s: %s (runs %s), baseline %s (runs %s), %s\n", r.Name, formatValue(r.Figure, r.Unit),
				runsText(r.Runs, r.Unit), formatValue(r.Baseline, r.Unit), runsText(r.BaselineRuns, r.Unit), r.Result())
		}
	}
	b.rows = append(b.rows, rs...)
}

// measure runs the sections in an order that needs each dispatcher once:
// signing and the disk need nothing; ingest, throughput, latency,
// isolation and memory share the "bench" dispatcher; fan-out and the
// control-plane run, the stored backlog and the dead endpoint have
// dispatchers of their own.
func (b *bench) measure(ctx context.Context, root string) (err error) {
	cfg := b.cfg
	if cfg.wants(6) {
		b.step("Signing cost")
		b.add(b.profiled(6, b.signing)...)
	}
	needCluster := false
	for _, s := range []int{1, 2, 3, 4, 5, 7, 8, 9, 10} {
		needCluster = needCluster || cfg.wants(s)
	}
	if !needCluster {
		return nil
	}
	if b.receiver, err = startReceiver(); err != nil {
		return err
	}
	defer b.receiver.close()
	b.step("Starting the test API server and the manager")
	if b.cluster, err = startCluster(ctx, root, b.dir, cfg.InProcess, b.progress); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.cluster.stop()) }()

	if cfg.wants(1) || cfg.wants(2) || cfg.wants(3) || cfg.wants(5) || cfg.wants(8) {
		if err := b.dataPlane(ctx); err != nil {
			return err
		}
	}
	if cfg.wants(4) || cfg.wants(7) {
		if err := b.fanoutAndScale(ctx); err != nil {
			return err
		}
	}
	// Sections 9 and 10 came later: their rows follow the others, so
	// that rows keep their numbers.
	if cfg.wants(9) {
		if err := b.storedBacklog(ctx); err != nil {
			return err
		}
	}
	if cfg.wants(10) {
		if err := b.deadEndpoint(ctx); err != nil {
			return err
		}
	}
	return nil
}
