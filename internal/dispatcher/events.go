package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	eventsclient "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/report"
)

// The DeadLettered Events of a subscription form a series, as Kubernetes'
// event series do: the first dead letter creates an Event at once; later
// ones raise its series count and replace its note with the latest, written
// at most every deadLetterWriteEvery, so a dead endpoint cannot flood the
// API server, and none is dropped. A series ends after deadLetterSeriesGap
// without a dead letter; the next one starts a new Event.
const (
	deadLetterWriteEvery = 10 * time.Second
	deadLetterSeriesGap  = 6 * time.Minute
	// deadLetterFlushTick is how often due series are looked at.
	deadLetterFlushTick = time.Second
	// reportingController names the dispatcher in its Events, as its
	// event recorder does.
	reportingController = "hookline-dispatcher"
)

// deadLetterEvents writes the DeadLettered Event series of every served
// subscription.
type deadLetterEvents struct {
	events   eventsclient.EventsGetter
	clock    clock.WithTicker
	instance string
	log      *slog.Logger

	mu     sync.Mutex
	series map[report.Key]*deadLetterSeries
	kick   chan struct{}
}

// deadLetterSeries is one subscription's current series.
type deadLetterSeries struct {
	regarding corev1.ObjectReference
	// name is the Event's, once created.
	name        string
	first, last time.Time
	count       int32
	note        string
	// written is the count the API server has; wroteAt when it got it.
	written int32
	wroteAt time.Time
}

func newDeadLetterEvents(events eventsclient.EventsGetter, clk clock.WithTicker, instance string, log *slog.Logger) *deadLetterEvents {
	return &deadLetterEvents{events: events, clock: clk, instance: instance, log: log,
		series: map[report.Key]*deadLetterSeries{}, kick: make(chan struct{}, 1)}
}

// record counts one dead letter of the subscription sub under key, with
// note saying which and why.
func (e *deadLetterEvents) record(key report.Key, sub *hooklinev1.WebhookSubscription, note string) {
	now := e.clock.Now()
	e.mu.Lock()
	s := e.series[key]
	if s == nil || now.Sub(s.last) >= deadLetterSeriesGap {
		s = &deadLetterSeries{first: now, regarding: corev1.ObjectReference{
			APIVersion: hooklinev1.GroupVersion.String(), Kind: "WebhookSubscription",
			Namespace: sub.Namespace, Name: sub.Name, UID: sub.UID,
		}}
		e.series[key] = s
	}
	s.count++
	s.last, s.note = now, truncateNote(note)
	e.mu.Unlock()
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// run writes the series until ctx ends, then once more.
func (e *deadLetterEvents) run(ctx context.Context) {
	t := e.clock.NewTicker(deadLetterFlushTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			e.flush(wctx, true)
			cancel()
			return
		case <-t.C():
		case <-e.kick:
		}
		e.flush(ctx, false)
	}
}

// flush writes the series that are due: new ones at once, grown ones every
// deadLetterWriteEvery (or all that grew, when final). Ended series that
// are fully written are forgotten.
func (e *deadLetterEvents) flush(ctx context.Context, final bool) {
	now := e.clock.Now()
	type due struct {
		key report.Key
		s   deadLetterSeries
	}
	var todo []due
	e.mu.Lock()
	for k, s := range e.series {
		switch {
		case s.count == s.written && now.Sub(s.last) >= deadLetterSeriesGap:
			delete(e.series, k)
		case s.count != s.written && (s.name == "" || final || now.Sub(s.wroteAt) >= deadLetterWriteEvery):
			todo = append(todo, due{k, *s})
		}
	}
	e.mu.Unlock()
	for _, d := range todo {
		name, err := e.write(ctx, d.s)
		if err != nil {
			e.log.Warn("Recording a DeadLettered Event", "subscription", d.key, "err", err)
			continue
		}
		e.mu.Lock()
		// The series may have been replaced meanwhile; the write is then
		// stale but harmless.
		if s := e.series[d.key]; s != nil && s.first.Equal(d.s.first) {
			s.name, s.written, s.wroteAt = name, d.s.count, now
		}
		e.mu.Unlock()
	}
}

// write creates the series' Event, or updates its count and note, and
// returns its name.
func (e *deadLetterEvents) write(ctx context.Context, s deadLetterSeries) (string, error) {
	events := e.events.Events(s.regarding.Namespace)
	var series *eventsv1.EventSeries
	if s.count > 1 {
		series = &eventsv1.EventSeries{Count: s.count, LastObservedTime: metav1.NewMicroTime(s.last)}
	}
	if s.name == "" {
		ev, err := events.Create(ctx, &eventsv1.Event{
			ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", s.regarding.Name, s.first.UnixNano()), Namespace: s.regarding.Namespace},
			EventTime:           metav1.NewMicroTime(s.first),
			Series:              series,
			ReportingController: reportingController,
			ReportingInstance:   reportingInstance(e.instance),
			Action:              "Deliver",
			Reason:              hooklinev1.ReasonDeadLettered,
			Regarding:           s.regarding,
			Note:                s.note,
			Type:                corev1.EventTypeWarning,
		}, metav1.CreateOptions{})
		if err != nil {
			return "", err
		}
		return ev.Name, nil
	}
	patch, err := json.Marshal(map[string]any{"series": series, "note": s.note})
	if err != nil {
		return "", err
	}
	if _, err := events.Patch(ctx, s.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return "", err
	}
	return s.name, nil
}

// reportingInstance names this instance in its Events, within the API's
// 128 characters.
func reportingInstance(instance string) string {
	s := reportingController + "-" + instance
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// deadLetterNote says which event was dead-lettered and why, once: the
// policy's reason may already count the attempts ("gave up after 3
// attempts"), and the last attempt's message names its status.
func deadLetterNote(id string, attempts int, reason, last string) string {
	note := "Event " + id + " dead-lettered"
	if !strings.Contains(reason, fmt.Sprintf("%d attempt", attempts)) {
		note += fmt.Sprintf(" after %d %s", attempts, map[bool]string{true: "attempt", false: "attempts"}[attempts == 1])
	}
	if reason != "" {
		note += ": " + reason
	}
	if last != "" {
		note += " (last: " + last + ")"
	}
	return note
}
