package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// TestDispatcher runs the manager and the dispatcher binary, each with only
// the permissions the operator grants it, against the test API server, and
// checks what users see: the bytes receivers get, the ingest API's answers,
// and the subscriptions' status and Events.
func TestDispatcher(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const ns = "team"
	if err := c.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	d := &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: operatorNamespace},
		Spec: hooklinev1.WebhookDispatcherSpec{
			AllowedNamespaces: hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromAll},
			Egress:            hooklinev1.EgressPolicy{AllowPlainHTTP: true},
		},
	}
	ws := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Name: "signing", Namespace: ns}}
	for _, o := range []client.Object{d, ws} {
		if err := c.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, func() error { return ready(ctx, c.admin, ws) })
	disp := c.startDispatcher(t, operatorNamespace, "default", "local-0", "--data-dir="+t.TempDir())
	disp.waitReady(t)
	waitFor(t, 30*time.Second, func() error { return ready(ctx, c.admin, d) })
	token := c.producerToken(ctx, t, ns)

	secret := &corev1.Secret{}
	if err := c.admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "signing"}, secret); err != nil {
		t.Fatal(err)
	}
	verifier, err := standardwebhooks.NewWebhook(string(secret.Data[hooklinev1.SecretKeySigningKey]))
	if err != nil {
		t.Fatal(err)
	}

	subscribe := func(t *testing.T, name, url string, types []string, mutate func(*hooklinev1.WebhookSubscription)) *hooklinev1.WebhookSubscription {
		t.Helper()
		sub := &hooklinev1.WebhookSubscription{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: hooklinev1.WebhookSubscriptionSpec{
				URL:           url,
				EventTypes:    types,
				DispatcherRef: &hooklinev1.DispatcherReference{Name: "default", Namespace: operatorNamespace},
				Signing:       hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "signing"}},
				Delivery: hooklinev1.DeliveryPolicy{Retry: hooklinev1.RetryPolicy{
					InitialBackoff: &metav1.Duration{Duration: 200 * time.Millisecond},
					MaxBackoff:     &metav1.Duration{Duration: time.Second},
				}},
			},
		}
		if mutate != nil {
			mutate(sub)
		}
		if err := c.admin.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		// Served once the dispatcher says so.
		waitFor(t, 30*time.Second, func() error { return condition(ctx, c, sub, hooklinev1.ConditionAccepted, metav1.ConditionTrue) })
		return sub
	}
	send := func(t *testing.T, event map[string]any) string {
		t.Helper()
		code, body, err := publish(disp.ingest, token, ns, event)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("publishing %v: %d %v %v", event, code, body, err)
		}
		return body["id"].(string)
	}

	t.Run("delivers signed events and reports them in status", func(t *testing.T) {
		rcv := newReceiver(t, nil)
		sub := subscribe(t, "orders", rcv.URL+"/hooks?token=x", []string{"order.*"}, nil)
		id := send(t, map[string]any{"id": "order-1", "type": "order.created", "data": map[string]any{"total": 42}})
		if id != "order-1" {
			t.Errorf("id = %q, want the producer's", id)
		}
		send(t, map[string]any{"type": "invoice.paid", "data": 1}) // matches nothing
		waitFor(t, 30*time.Second, func() error {
			if n := len(rcv.deliveries()); n != 1 {
				return fmt.Errorf("%d deliveries", n)
			}
			return nil
		})
		got := rcv.deliveries()[0]
		if got.Header.Get("webhook-id") != "order-1" {
			t.Errorf("webhook-id = %q", got.Header.Get("webhook-id"))
		}
		if err := verifier.Verify(got.Body, got.Header); err != nil {
			t.Errorf("the Standard Webhooks library refuses the signature: %v", err)
		}
		var body map[string]any
		if err := json.Unmarshal(got.Body, &body); err != nil {
			t.Fatal(err)
		}
		if body["type"] != "order.created" || fmt.Sprint(body["data"]) != "map[total:42]" || body["timestamp"] == nil || len(body) != 3 {
			t.Errorf("body = %s", got.Body)
		}
		if ct, ua := got.Header.Get("Content-Type"), got.Header.Get("User-Agent"); ct != "application/json" || !strings.HasPrefix(ua, "Hookline/") {
			t.Errorf("content-type %q, user-agent %q", ct, ua)
		}
		// Publishing the same id again stores it once.
		code, dup, _ := publish(disp.ingest, token, ns, map[string]any{"id": "order-1", "type": "order.created", "data": 1})
		if code != http.StatusAccepted || dup["id"] != "order-1" {
			t.Errorf("republishing: %d %v", code, dup)
		}
		waitFor(t, 30*time.Second, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
				return err
			}
			st := sub.Status.Delivery
			if st == nil || st.Delivered != 1 || st.LastSuccessTime == nil {
				return fmt.Errorf("delivery status %+v", st)
			}
			return condition(ctx, c, sub, hooklinev1.ConditionEndpointHealthy, metav1.ConditionTrue)
		})
		if len(rcv.deliveries()) != 1 {
			t.Errorf("the duplicate was delivered again: %d deliveries", len(rcv.deliveries()))
		}
		if !ownsField(sub, "hookline-dispatcher", "f:delivery") {
			t.Errorf("status.delivery is not owned by the dispatcher's field manager: %v", sub.ManagedFields)
		}
		waitFor(t, 30*time.Second, func() error { return ready(ctx, c.admin, sub) })
	})

	t.Run("ingest refuses bad producers and bad input", func(t *testing.T) {
		if code, _, _ := publish(disp.ingest, "", ns, map[string]any{"type": "a.b"}); code != http.StatusUnauthorized {
			t.Errorf("no token: %d", code)
		}
		if code, _, _ := publish(disp.ingest, "not-a-token", ns, map[string]any{"type": "a.b"}); code != http.StatusUnauthorized {
			t.Errorf("bad token: %d", code)
		}
		if code, body, _ := publish(disp.ingest, token, "default", map[string]any{"type": "a.b"}); code != http.StatusForbidden {
			t.Errorf("namespace not granted: %d %v", code, body)
		}
		if code, body, _ := publish(disp.ingest, token, ns, map[string]any{"data": 1}); code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body["message"]), "type") {
			t.Errorf("missing type: %d %v", code, body)
		}
	})

	t.Run("retries with the same webhook-id until success", func(t *testing.T) {
		rcv := newReceiver(t, func(w http.ResponseWriter, attempt int) {
			if attempt <= 2 {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		sub := subscribe(t, "flaky", rcv.URL, []string{"flaky.>"}, nil)
		id := send(t, map[string]any{"type": "flaky.thing.happened", "data": nil})
		waitFor(t, 60*time.Second, func() error {
			if n := rcv.ids()[id]; n != 3 {
				return fmt.Errorf("%d attempts", n)
			}
			return nil
		})
		for _, d := range rcv.deliveries() {
			if d.Header.Get("webhook-id") != id {
				t.Errorf("attempt with webhook-id %q, want %q", d.Header.Get("webhook-id"), id)
			}
		}
		waitFor(t, 30*time.Second, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
				return err
			}
			if st := sub.Status.Delivery; st == nil || st.Delivered != 1 || st.Failed != 2 || st.ConsecutiveFailures != 0 {
				return fmt.Errorf("delivery status %+v", st)
			}
			return nil
		})
	})

	t.Run("honours Retry-After", func(t *testing.T) {
		rcv := newReceiver(t, func(w http.ResponseWriter, attempt int) {
			if attempt == 1 {
				w.Header().Set("Retry-After", "2")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		subscribe(t, "busy", rcv.URL, []string{"busy.>"}, nil)
		send(t, map[string]any{"type": "busy.x", "data": 1})
		waitFor(t, 60*time.Second, func() error {
			if n := len(rcv.deliveries()); n != 2 {
				return fmt.Errorf("%d attempts", n)
			}
			return nil
		})
		got := rcv.deliveries()
		// The backoff alone would retry within a second.
		if gap := got[1].At.Sub(got[0].At); gap < 2*time.Second {
			t.Errorf("retried %s after a 429 with Retry-After: 2", gap)
		}
	})

	t.Run("never follows redirects", func(t *testing.T) {
		target := newReceiver(t, nil)
		rcv := newReceiver(t, func(w http.ResponseWriter, _ int) {
			w.Header().Set("Location", target.URL)
			w.WriteHeader(http.StatusFound)
		})
		sub := subscribe(t, "moved", rcv.URL, []string{"moved.>"}, func(s *hooklinev1.WebhookSubscription) {
			s.Spec.Delivery.Retry.MaxAttempts = 2
		})
		send(t, map[string]any{"type": "moved.x", "data": 1})
		waitFor(t, 60*time.Second, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
				return err
			}
			if st := sub.Status.Delivery; st == nil || st.LastFailure == nil || st.LastFailure.Class != "Redirect" || st.DeadLettered != 1 {
				return fmt.Errorf("delivery status %+v", st)
			}
			return nil
		})
		if n := len(target.deliveries()); n != 0 {
			t.Errorf("the redirect target got %d requests", n)
		}
		// Exhausted attempts dead-letter, with an Event.
		waitFor(t, 30*time.Second, func() error { return hasEvent(ctx, c, sub, "DeadLettered") })
	})

	t.Run("410 suspends the subscription", func(t *testing.T) {
		rcv := newReceiver(t, func(w http.ResponseWriter, _ int) { w.WriteHeader(http.StatusGone) })
		sub := subscribe(t, "gone", rcv.URL, []string{"gone.>"}, nil)
		send(t, map[string]any{"type": "gone.x", "data": 1})
		waitFor(t, 60*time.Second, func() error {
			return condition(ctx, c, sub, hooklinev1.ConditionSuspended, metav1.ConditionTrue)
		})
		waitFor(t, 30*time.Second, func() error { return hasEvent(ctx, c, sub, "EndpointGone") })
		send(t, map[string]any{"type": "gone.y", "data": 2})
		time.Sleep(2 * time.Second)
		if n := len(rcv.deliveries()); n != 1 {
			t.Errorf("a suspended subscription got %d deliveries, want the one that answered 410", n)
		}
	})

	t.Run("a hanging endpoint does not hold up another", func(t *testing.T) {
		release := make(chan struct{})
		var hung atomic.Int32
		slow := newReceiver(t, func(w http.ResponseWriter, _ int) {
			hung.Add(1)
			<-release
			w.WriteHeader(http.StatusOK)
		})
		t.Cleanup(func() { close(release) })
		fast := newReceiver(t, nil)
		subscribe(t, "slow", slow.URL, []string{"shared.>"}, func(s *hooklinev1.WebhookSubscription) {
			s.Spec.Delivery.Timeout = &metav1.Duration{Duration: 5 * time.Minute}
			s.Spec.Delivery.Concurrency = 2
		})
		subscribe(t, "fast", fast.URL, []string{"shared.>"}, nil)
		for i := range 20 {
			send(t, map[string]any{"type": "shared.tick", "data": i})
		}
		waitFor(t, 60*time.Second, func() error {
			if n := len(fast.ids()); n != 20 {
				return fmt.Errorf("the fast endpoint got %d of 20 events", n)
			}
			return nil
		})
		if n := hung.Load(); n != 2 {
			t.Errorf("the hanging endpoint holds %d requests, want its concurrency of 2", n)
		}
	})

	// A graceful stop withdraws the instance: the dispatcher stops being Ready.
	disp.stop(t)
	waitFor(t, 30*time.Second, func() error {
		if err := ready(ctx, c.admin, d); err == nil {
			return fmt.Errorf("the dispatcher is still Ready after its only instance stopped")
		}
		return nil
	})
}

func condition(ctx context.Context, c *cluster, obj client.Object, typ string, want metav1.ConditionStatus) error {
	if err := c.admin.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return err
	}
	cond := meta.FindStatusCondition(obj.(interface{ GetConditions() []metav1.Condition }).GetConditions(), typ)
	if cond == nil || cond.Status != want || cond.ObservedGeneration != obj.GetGeneration() {
		return fmt.Errorf("%s of %s is %+v, want %s", typ, obj.GetName(), cond, want)
	}
	return nil
}

func hasEvent(ctx context.Context, c *cluster, obj client.Object, reason string) error {
	var list eventsv1.EventList
	if err := c.admin.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.Regarding.Name == obj.GetName() && e.Reason == reason {
			if e.ReportingController != "hookline-dispatcher" {
				return fmt.Errorf("event %s reported by %q", reason, e.ReportingController)
			}
			return nil
		}
	}
	return fmt.Errorf("no %s event for %s among %d", reason, obj.GetName(), len(list.Items))
}

// ownsField says whether manager owns a status field of obj.
func ownsField(obj client.Object, manager, field string) bool {
	for _, mf := range obj.GetManagedFields() {
		if mf.Manager == manager && mf.Subresource == "status" && mf.FieldsV1 != nil && strings.Contains(string(mf.FieldsV1.Raw), `"`+field+`"`) {
			return true
		}
	}
	return false
}

var _ = ptr.To[int]
