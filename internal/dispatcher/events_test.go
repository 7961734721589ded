package dispatcher

import (
	"context"
	"log/slog"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/report"
)

// TestDeadLetterEventSeries checks that dead letters are counted in one
// Event per series, none dropped: the first written at once, later ones
// raising the count (with the latest note) at most every write interval,
// and a new Event once the series has ended.
func TestDeadLetterEventSeries(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	e := newDeadLetterEvents(kube.EventsV1(), clk, "default-0", slog.New(slog.DiscardHandler))
	sub := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "billing", UID: "u1"}}
	key := report.Key{Namespace: "shop", Name: "billing", UID: "u1"}
	events := func() []eventsv1.Event {
		t.Helper()
		list, err := kube.EventsV1().Events("shop").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return list.Items
	}
	count := func(ev eventsv1.Event) int32 {
		if ev.Series == nil {
			return 1
		}
		return ev.Series.Count
	}

	e.record(key, sub, "Event order-1 dead-lettered: gave up after 3 attempts (last: HTTP 500: boom)")
	e.flush(ctx, false)
	got := events()
	if len(got) != 1 || count(got[0]) != 1 || got[0].Reason != "DeadLettered" || got[0].Type != "Warning" ||
		got[0].Regarding.Name != "billing" || got[0].Regarding.Kind != "WebhookSubscription" || got[0].ReportingController != "hookline-dispatcher" ||
		got[0].Note != "Event order-1 dead-lettered: gave up after 3 attempts (last: HTTP 500: boom)" {
		t.Fatalf("after the first dead letter: %+v", got)
	}

	// Two more within the write interval: counted, written once it passed.
	clk.Step(2 * time.Second)
	e.record(key, sub, "Event order-2 dead-lettered: gave up after 3 attempts (last: HTTP 500: boom)")
	e.record(key, sub, "Event order-3 dead-lettered: gave up after 3 attempts (last: HTTP 500: boom)")
	e.flush(ctx, false)
	if got := events(); len(got) != 1 || count(got[0]) != 1 {
		t.Fatalf("written before the interval passed: %+v", got)
	}
	clk.Step(deadLetterWriteEvery)
	e.flush(ctx, false)
	got = events()
	if len(got) != 1 || count(got[0]) != 3 || got[0].Series.LastObservedTime.Time.IsZero() ||
		got[0].Note != "Event order-3 dead-lettered: gave up after 3 attempts (last: HTTP 500: boom)" {
		t.Fatalf("after three dead letters: %+v", got)
	}

	// A final flush writes what grew, interval or not.
	e.record(key, sub, "Event order-4 dead-lettered: gave up after 3 attempts")
	e.flush(ctx, true)
	if got := events(); len(got) != 1 || count(got[0]) != 4 {
		t.Fatalf("after the final flush: %+v", got)
	}

	// Long quiet: the series ended, the next dead letter starts another.
	clk.Step(deadLetterSeriesGap)
	e.record(key, sub, "Event order-5 dead-lettered: gave up after 3 attempts")
	e.flush(ctx, false)
	if got := events(); len(got) != 2 {
		t.Fatalf("after the series ended: %d Events, want 2", len(got))
	}
}

func TestDeadLetterNote(t *testing.T) {
	for _, tc := range []struct {
		attempts     int
		reason, last string
		want         string
	}{
		{3, "gave up after 3 attempts", "HTTP 500: Internal Server Error",
			"Event e1 dead-lettered: gave up after 3 attempts (last: HTTP 500: Internal Server Error)"},
		{1, "TLSError is not retryable", "x509: certificate signed by unknown authority",
			"Event e1 dead-lettered after 1 attempt: TLSError is not retryable (last: x509: certificate signed by unknown authority)"},
		{4, "next attempt would be past the maximum age of 1h0m0s", "",
			"Event e1 dead-lettered after 4 attempts: next attempt would be past the maximum age of 1h0m0s"},
	} {
		if got := deadLetterNote("e1", tc.attempts, tc.reason, tc.last); got != tc.want {
			t.Errorf("note %q, want %q", got, tc.want)
		}
	}
}
