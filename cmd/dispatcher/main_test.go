package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
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
