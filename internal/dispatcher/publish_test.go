package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hookline/hookline/internal/ingest"
	"github.com/hookline/hookline/internal/queue"
)

func TestAmbiguous(t *testing.T) {
	for err, want := range map[error]bool{
		errors.New("nats: timeout"):                       true,
		fmt.Errorf("committing batch: %w", queue.ErrFull): false,
		queue.ErrClosed:                                   false,
		// The queue's own request timeout: the store may have happened.
		fmt.Errorf("publish: %w", context.DeadlineExceeded): true,
	} {
		if got := ambiguous(err); got != want {
			t.Errorf("ambiguous(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestPublishResults(t *testing.T) {
	timeout := errors.New("nats: timeout")
	// The first attempt timed out after storing event 0 (unknown to us) and
	// found event 1 already stored by the producer's earlier request.
	first := []queue.PublishResult{{Err: timeout}, {Duplicate: true}}
	retry := []queue.PublishResult{{Duplicate: true}, {Duplicate: true}}
	out, err := publishResults(retry, first, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Duplicate || !out[1].Duplicate || out[0].Err != nil || out[1].Err != nil {
		t.Errorf("results %+v: only the producer's own repeat is a duplicate", out)
	}

	if _, err := publishResults(nil, nil, fmt.Errorf("x: %w", queue.ErrFull)); !errors.Is(err, ingest.ErrQueueFull) {
		t.Errorf("a full queue gives %v, want ingest.ErrQueueFull", err)
	}
	out, err = publishResults([]queue.PublishResult{{Err: queue.ErrFull}}, nil, timeout)
	if err != nil || !errors.Is(out[0].Err, ingest.ErrQueueFull) {
		t.Errorf("per-event full: %+v %v", out, err)
	}
	if _, err := publishResults(nil, nil, timeout); !errors.Is(err, timeout) {
		t.Errorf("no results: %v", err)
	}
}

func TestRefusedFull(t *testing.T) {
	full := fmt.Errorf("committing batch: %w", queue.ErrFull)
	for _, tc := range []struct {
		name string
		res  []queue.PublishResult
		err  error
		want bool
	}{
		{"stored", []queue.PublishResult{{}, {Duplicate: true}}, nil, false},
		{"whole batch refused", nil, full, true},
		{"one event refused", []queue.PublishResult{{}, {Err: full}}, nil, true},
		{"other failure", []queue.PublishResult{{Err: errors.New("nats: timeout")}}, nil, false},
		{"closed", nil, queue.ErrClosed, false},
	} {
		if got := refusedFull(tc.res, tc.err); got != tc.want {
			t.Errorf("%s: refusedFull = %v, want %v", tc.name, got, tc.want)
		}
	}
}
