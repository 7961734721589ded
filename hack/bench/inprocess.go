package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hookline/hookline/internal/auth"
	"github.com/hookline/hookline/internal/dispatcher"
	"github.com/hookline/hookline/internal/playground"
	"github.com/hookline/hookline/internal/queue"
)

// runInProcess runs the dispatcher inside this process, wired as
// cmd/dispatcher wires it with its default flags (producer authentication,
// an embedded queue with fsync on every write, the default client rate
// limits), so that -cpuprofile covers its hot path. Figures measured this
// way share the process with the load generators and the receiver: use it
// to profile, not for the table.
func (d *dispatcherProc) runInProcess(ctx context.Context, kubeconfig, logPath string, statusInterval time.Duration, queueMaxBytes int64) error {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening the dispatcher log: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(logFile, nil))
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		_ = logFile.Close()
		return fmt.Errorf("loading the dispatcher's kubeconfig: %w", err)
	}
	// cmd/dispatcher's --kube-api-qps and --kube-api-burst defaults.
	cfg.QPS, cfg.Burst = 200, 400
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		_ = logFile.Close()
		return fmt.Errorf("creating the dispatcher's Kubernetes client: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	q, err := queue.Open(runCtx, queue.Config{
		DispatcherNamespace: operatorNamespace,
		DispatcherName:      d.name,
		DataDir:             d.dataDir,
		MaxBytes:            queueMaxBytes,
		// The command bounds the backlog stream by a share of the
		// filesystem, far above what a run stores; the queue's own
		// default (the events stream's bound) would fill in section 10.
		BacklogMaxBytes: 4 << 30,
		Logger:          log.With("component", "queue"),
	})
	if err != nil {
		cancel()
		_ = logFile.Close()
		return fmt.Errorf("opening the queue: %w", err)
	}
	disp, err := dispatcher.New(dispatcher.Options{
		Namespace: operatorNamespace, Name: d.name, Instance: d.name + "-0",
		Kube:       cfg,
		Queue:      q,
		Authorizer: auth.New(kube, auth.Options{Audience: "hookline"}),
		IngestAddr: "127.0.0.1:0", HealthAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		StatusInterval: statusInterval,
		ShutdownGrace:  5 * time.Second,
		Logger:         log,
	})
	if err != nil {
		cancel()
		_ = q.Close()
		_ = logFile.Close()
		return fmt.Errorf("creating the dispatcher: %w", err)
	}
	d.pid = os.Getpid()
	d.addrs = playground.DispatcherAddresses{Ingest: disp.IngestAddr(), Health: disp.HealthAddr(), Metrics: disp.MetricsAddr()}
	done := make(chan error, 1)
	go func() { done <- disp.Run(runCtx) }()
	d.stop = func() error {
		cancel()
		err := <-done
		if cerr := q.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return errors.Join(err, logFile.Close())
	}
	return nil
}
