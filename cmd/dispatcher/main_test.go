package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/test/testenv"
)

func TestCloseWithin(t *testing.T) {
	failed := errors.New("draining NATS connection: boom")
	for _, tc := range []struct {
		name       string
		close      func(release <-chan struct{}) error
		wantClosed bool
		wantErr    error
	}{
		{"closes", func(<-chan struct{}) error { return nil }, true, nil},
		{"fails", func(<-chan struct{}) error { return failed }, true, failed},
		{"takes too long", func(release <-chan struct{}) error { <-release; return nil }, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			closed, err := closeWithin(func() error { return tc.close(release) }, 50*time.Millisecond)
			if closed != tc.wantClosed || !errors.Is(err, tc.wantErr) {
				t.Errorf("closeWithin = %v, %v; want %v, %v", closed, err, tc.wantClosed, tc.wantErr)
			}
		})
	}
}

// blockingCloser closes only when released.
type blockingCloser struct{ release chan struct{} }

func (b *blockingCloser) Close() error {
	<-b.release
	return nil
}

func TestCloseQueueWarnsWhenItStopsWaiting(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	b := &blockingCloser{release: make(chan struct{})}
	defer close(b.release)
	closeQueue(b, 0, log)
	if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "The queue did not close within the shutdown grace period") ||
		!strings.Contains(got, "waited="+minQueueClose.String()) {
		t.Errorf("logs:\n%s\nwant a warning that it stopped waiting after %s", got, minQueueClose)
	}
}

// TestCloseQueueOfManyConsumers logs how long the embedded queue takes to
// close with many subscription consumers, and when closeQueue stops
// waiting for it.
func TestCloseQueueOfManyConsumers(t *testing.T) {
	const consumers = 500
	ctx, cancel := testenv.Context(t)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	q, err := queue.Open(ctx, queue.Config{DispatcherNamespace: "hookline-system", DispatcherName: "default",
		DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range consumers {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := q.EnsureConsumer(ctx, queue.ConsumerSpec{Name: fmt.Sprintf("sub-%04d", i), Namespace: "team",
				Patterns: []string{"order.created"}, MaxAckPending: 10, AckWait: time.Minute}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	t.Logf("created %d consumers in %s", consumers, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	closeQueue(q, 0, log)
	returned := time.Since(start)
	// The queue closes once: this waits for the close closeQueue started.
	_ = q.Close()
	full := time.Since(start)
	t.Logf("the queue with %d consumers took %s to close (%s per consumer); closeQueue returned after %s",
		consumers, full.Round(time.Millisecond), (full / consumers).Round(10*time.Microsecond), returned.Round(time.Millisecond))
}
