package dispatcher

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/ingest"
	"github.com/hookline/hookline/internal/queue"
)

// replayTimeout bounds one replay of a subscription's dead letters.
const replayTimeout = 5 * time.Minute

// Replay queues again the dead letters of a served subscription stored
// between since and until (zero: unbounded), each with its original event
// id, for that subscription alone. It implements ingest.Replayer; the
// ingest API has authorised the caller.
func (d *Dispatcher) Replay(ctx context.Context, ns, name string, since, until time.Time) (int, error) {
	sv, st := d.subs.servedState(ns, name)
	if sv == nil || st == nil {
		return 0, fmt.Errorf("subscription %s/%s: %w", ns, name, ingest.ErrSubscriptionNotFound)
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	n, err := d.subs.replay(ctx, sv, "api-"+hex.EncodeToString(id), since, until)
	if err != nil {
		return n, err
	}
	d.events.Eventf(st.obj, nil, "Normal", hooklinev1.ReasonReplayed, "Replay",
		"Replayed %d dead-lettered %s through the ingest API", n, plural(n, "delivery", "deliveries"))
	return n, nil
}

// replay queues again the dead letters of a served subscription.
func (s *subscriptions) replay(ctx context.Context, sv *served, requestID string, since, until time.Time) (int, error) {
	n, err := s.queue.Replay(ctx, queue.ReplayRequest{
		SubscriptionNamespace: sv.key.Namespace,
		SubscriptionName:      sv.key.Name,
		SubscriptionUID:       sv.key.UID,
		Token:                 sv.token,
		Since:                 since,
		Until:                 until,
		RequestID:             requestID,
	})
	if err != nil {
		return n, fmt.Errorf("replaying the dead letters of %s/%s: %w", sv.key.Namespace, sv.key.Name, err)
	}
	s.log.Info("Replayed dead letters", "subscription", sv.key.Namespace+"/"+sv.key.Name, "replayed", n, "request", requestID)
	return n, nil
}

// replayRequested handles the hookline.dev/replay annotation: a value the
// status does not record as handled replays every kept dead letter once.
// Only the instance writing status handles it, and records the value in
// status.delivery.lastReplay, so that it is handled once.
func (s *subscriptions) replayRequested(ctx context.Context, sv *served, obj *hooklinev1.WebhookSubscription) {
	want := obj.Annotations[hooklinev1.AnnotationReplay]
	if want == "" || !s.leading() {
		return
	}
	s.mu.Lock()
	last := sv.lastReplay
	if last == nil && obj.Status.Delivery != nil {
		last = obj.Status.Delivery.LastReplay
	}
	if (last != nil && last.Request == want) || sv.replaying {
		s.mu.Unlock()
		return
	}
	sv.replaying = true
	s.mu.Unlock()
	sum := sha256.Sum256([]byte(string(obj.UID) + "\x00" + want))
	requestID := "annotation-" + hex.EncodeToString(sum[:8])
	key := sv.key.Namespace + "/" + sv.key.Name
	go func() {
		rctx, cancel := context.WithTimeout(ctx, replayTimeout)
		defer cancel()
		n, err := s.replay(rctx, sv, requestID, time.Time{}, time.Time{})
		s.mu.Lock()
		sv.replaying = false
		if err == nil {
			sv.lastReplay = &hooklinev1.ReplayStatus{Request: want, Time: metav1.NewTime(s.clock.Now().UTC().Truncate(time.Second)), Replayed: int64(n)}
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Error("Replaying dead letters as the annotation asks", "subscription", key, "err", err)
			s.events().Eventf(obj, nil, "Warning", hooklinev1.ReasonReplayed, "Replay", "Replaying dead-lettered deliveries failed; it is tried again: %v", err)
			s.work.AddRateLimited(key)
			return
		}
		s.events().Eventf(obj, nil, "Normal", hooklinev1.ReasonReplayed, "Replay",
			"Replayed %d dead-lettered %s as %s=%q asked", n, plural(n, "delivery", "deliveries"), hooklinev1.AnnotationReplay, want)
	}()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// TestDelivery makes one attempt of ev to a served subscription at once,
// outside the queue: it is not retried and not counted in status, so a
// test never changes the subscription's health. It implements
// ingest.Tester; the ingest API has authorised the caller as a producer.
func (d *Dispatcher) TestDelivery(ctx context.Context, ns, name string, ev ingest.Event) (ingest.TestResult, error) {
	sv, st := d.subs.servedState(ns, name)
	if sv == nil || st == nil {
		return ingest.TestResult{}, fmt.Errorf("subscription %s/%s: %w", ns, name, ingest.ErrSubscriptionNotFound)
	}
	switch {
	case !st.accepted:
		return ingest.TestResult{}, fmt.Errorf("%w: %s", ingest.ErrNotDeliverable, st.msg)
	case st.awaitingValidation:
		return ingest.TestResult{}, fmt.Errorf("%w: the endpoint has not accepted the validation handshake", ingest.ErrNotDeliverable)
	}
	res := d.sender.Send(ctx, st.target, delivery.Message{ID: ev.ID, Type: ev.Type, Time: ev.Time, Data: ev.Data})
	out := ingest.TestResult{ID: ev.ID, Success: res.Success, StatusCode: res.StatusCode, Class: string(res.Class),
		Message: res.Message, LatencyMs: float64(res.Latency.Microseconds()) / 1000, SignedWith: []string{}}
	for _, k := range st.target.Keys {
		out.SignedWith = append(out.SignedWith, k.ID())
	}
	// The WebhookSecret's status says which key is current, so a test
	// shows whether this instance has picked a rotation up.
	if ws, err := d.store.webhookSecret(ns, st.obj.Spec.Signing.SecretRef.Name); err == nil && ws != nil {
		out.CurrentKey = ws.Status.CurrentKeyID
	}
	d.log.Info("Test delivery", "subscription", ns+"/"+name, "event", ev.ID, "status", res.StatusCode, "class", res.Class)
	return out, nil
}
