package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
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
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue/queuetest"
	"github.com/hookline/hookline/test/testenv"
)

// TestDispatcher runs the manager and the dispatcher binary, each with only
// the permissions the operator grants it, against the test API server, and
// checks what users see: the bytes receivers get, the ingest API's answers,
// and the subscriptions' status and Events. The dispatcher uses its
// embedded queue.
func TestDispatcher(t *testing.T) { dispatcherSuite(t, false) }

// TestDispatcherExternalQueue runs the same checks with two dispatcher
// instances sharing a three-node NATS JetStream cluster (streams replicated
// three times): either may deliver any event, and status comes from the
// counts they share.
func TestDispatcherExternalQueue(t *testing.T) { dispatcherSuite(t, true) }

func dispatcherSuite(t *testing.T, external bool) {
	c := startCluster(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	const ns = "team"
	if err := c.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	d := &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: operatorNamespace},
		Spec: hooklinev1.WebhookDispatcherSpec{
			AllowedNamespaces: hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromAll},
			Egress:            hooklinev1.EgressPolicy{AllowPlainHTTP: true, AllowedCIDRs: []string{"127.0.0.0/8"}},
		},
	}
	var urls []string
	if external {
		urls, _ = queuetest.StartCluster(t, 3)
		d.Spec.Replicas = ptr32(2)
		d.Spec.Queue = hooklinev1.QueueSpec{External: &hooklinev1.ExternalQueue{URL: strings.Join(urls, ","), StreamReplicas: 3}}
	}
	ws := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Name: "signing", Namespace: ns}}
	for _, o := range []client.Object{d, ws} {
		if err := c.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, func() error { return ready(ctx, c.admin, ws) })
	// The dispatcher trusts the HTTPS receiver's certificate as a system
	// root, as it would a public CA's.
	tlsRcv, caFile := newTLSReceiver(t, nil)
	c.procEnv = []string{"SSL_CERT_FILE=" + caFile}
	// Producers publish through the first instance; with the external queue
	// a second one shares the work.
	var instances []*dispatcherProc
	if external {
		for i := range 2 {
			instances = append(instances, c.startDispatcher(t, operatorNamespace, "default", fmt.Sprintf("shared-%d", i),
				"--queue-url="+strings.Join(urls, ","), "--stream-replicas=3"))
		}
	} else {
		instances = append(instances, c.startDispatcher(t, operatorNamespace, "default", "local-0", "--data-dir="+t.TempDir()))
	}
	for _, p := range instances {
		p.waitReady(t)
	}
	disp := instances[0]
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
		sub := createSubscription(ctx, t, c, ns, name, url, types, mutate)
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

	t.Run("counts deliveries in its metrics", func(t *testing.T) {
		if external {
			t.Skip("each instance counts the deliveries it made; the embedded run checks the figures")
		}
		text, err := httpGet("http://" + disp.metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`hookline_deliveries_total{namespace="team",outcome="delivered",subscription="orders"} 1`,
			`hookline_ingested_events_total{namespace="team",outcome="accepted"}`,
			`hookline_delivery_attempt_duration_seconds_count{namespace="team",subscription="orders"} 1`,
			`hookline_queue_max_bytes `,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		if strings.Contains(text, "127.0.0.1") {
			t.Errorf("metrics name a receiver's address")
		}
	})

	t.Run("delivers over HTTPS", func(t *testing.T) {
		subscribe(t, "secure", tlsRcv.URL+"/hooks", []string{"secure.>"}, nil)
		id := send(t, map[string]any{"type": "secure.thing", "data": "x"})
		waitFor(t, 30*time.Second, func() error {
			if tlsRcv.ids()[id] == 0 {
				return fmt.Errorf("not delivered yet")
			}
			return nil
		})
		if err := verifier.Verify(tlsRcv.deliveries()[0].Body, tlsRcv.deliveries()[0].Header); err != nil {
			t.Errorf("signature: %v", err)
		}
	})

	t.Run("signs with Ed25519", func(t *testing.T) {
		ed := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Name: "signing-ed", Namespace: ns},
			Spec: hooklinev1.WebhookSecretSpec{Algorithm: hooklinev1.AlgorithmEd25519}}
		if err := c.admin.Create(ctx, ed); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, func() error { return ready(ctx, c.admin, ed) })
		rcv := newReceiver(t, nil)
		subscribe(t, "ed", rcv.URL, []string{"ed.>"}, func(s *hooklinev1.WebhookSubscription) {
			s.Spec.Signing.SecretRef.Name = "signing-ed"
		})
		id := send(t, map[string]any{"type": "ed.signed", "data": []int{1, 2}})
		waitFor(t, 30*time.Second, func() error {
			if rcv.ids()[id] == 0 {
				return fmt.Errorf("not delivered yet")
			}
			return nil
		})
		if err := c.admin.Get(ctx, client.ObjectKeyFromObject(ed), ed); err != nil {
			t.Fatal(err)
		}
		got := rcv.deliveries()[0]
		if !verifyEd25519(t, ed.Status.PublicKey, got) {
			t.Errorf("no v1a signature verifies with the public key in the WebhookSecret's status: %q", got.Header.Get("webhook-signature"))
		}
	})

	t.Run("a rotation takes effect without a restart, both keys signing", func(t *testing.T) {
		rcv := newReceiver(t, nil)
		subscribe(t, "rotating", rcv.URL, []string{"rotating.>"}, nil)
		update(ctx, t, c, ws, func() {
			if ws.Annotations == nil {
				ws.Annotations = map[string]string{}
			}
			ws.Annotations[hooklinev1.RotateAnnotation] = "e2e-1"
		})
		var rotated corev1.Secret
		waitFor(t, 30*time.Second, func() error {
			if err := c.admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "signing"}, &rotated); err != nil {
				return err
			}
			if _, ok := rotated.Data[hooklinev1.SecretKeyPreviousSigningKey]; !ok {
				return fmt.Errorf("not rotated yet")
			}
			return nil
		})
		newKey, err := standardwebhooks.NewWebhook(string(rotated.Data[hooklinev1.SecretKeySigningKey]))
		if err != nil {
			t.Fatal(err)
		}
		// The dispatcher learns of the new key through its watch.
		waitFor(t, 30*time.Second, func() error {
			id := send(t, map[string]any{"type": "rotating.tick", "data": 1})
			var got *delivery
			waitFor(t, 30*time.Second, func() error {
				for _, d := range rcv.deliveries() {
					if d.Header.Get("webhook-id") == id {
						got = &d
						return nil
					}
				}
				return fmt.Errorf("not delivered yet")
			})
			if n := len(strings.Fields(got.Header.Get("webhook-signature"))); n != 2 {
				return fmt.Errorf("%d signatures", n)
			}
			if err := verifier.Verify(got.Body, got.Header); err != nil {
				t.Errorf("a receiver holding only the old key refuses: %v", err)
			}
			if err := newKey.Verify(got.Body, got.Header); err != nil {
				t.Errorf("a receiver holding only the new key refuses: %v", err)
			}
			return nil
		})
	})

	t.Run("filters by CEL, reporting runtime failures, and follows spec changes", func(t *testing.T) {
		rcv := newReceiver(t, nil)
		sub := subscribe(t, "big-orders", rcv.URL, []string{"order.*"}, func(s *hooklinev1.WebhookSubscription) {
			s.Spec.Filter = "event.data.total > 100"
		})
		small := send(t, map[string]any{"type": "order.created", "data": map[string]any{"total": 5}})
		odd := send(t, map[string]any{"type": "order.created", "data": "no total here"})
		big := send(t, map[string]any{"type": "order.created", "data": map[string]any{"total": 500}})
		waitFor(t, 30*time.Second, func() error {
			if rcv.ids()[big] == 0 {
				return fmt.Errorf("the matching event was not delivered")
			}
			return nil
		})
		if got := rcv.ids(); got[small] != 0 || got[odd] != 0 || len(got) != 1 {
			t.Errorf("delivered %v, want only %s", got, big)
		}
		waitFor(t, 30*time.Second, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
				return err
			}
			accepted := meta.FindStatusCondition(sub.Status.Conditions, hooklinev1.ConditionAccepted)
			if accepted == nil || !strings.Contains(accepted.Message, "filter") {
				return fmt.Errorf("Accepted does not report the filter failing at runtime: %+v", accepted)
			}
			return nil
		})

		// A new pattern takes effect without a restart.
		update(ctx, t, c, sub, func() {
			sub.Spec.EventTypes = []string{"order.*", "invoice.*"}
			sub.Spec.Filter = ""
		})
		waitFor(t, 30*time.Second, func() error { return condition(ctx, c, sub, hooklinev1.ConditionAccepted, metav1.ConditionTrue) })
		// Accepted for the new generation: the dispatcher serves the new spec.
		id := send(t, map[string]any{"type": "invoice.paid", "data": 1})
		waitFor(t, 30*time.Second, func() error {
			if rcv.ids()[id] == 0 {
				return fmt.Errorf("an invoice event after the change was not delivered")
			}
			return nil
		})
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

	t.Run("410 suspends the subscription until its spec changes", func(t *testing.T) {
		var back atomic.Bool
		rcv := newReceiver(t, func(w http.ResponseWriter, _ int) {
			if back.Load() {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.WriteHeader(http.StatusGone)
		})
		sub := subscribe(t, "gone", rcv.URL, []string{"gone.>"}, nil)
		first := send(t, map[string]any{"type": "gone.x", "data": 1})
		waitFor(t, 60*time.Second, func() error {
			return condition(ctx, c, sub, hooklinev1.ConditionSuspended, metav1.ConditionTrue)
		})
		waitFor(t, 30*time.Second, func() error { return hasEvent(ctx, c, sub, "EndpointGone") })
		waitFor(t, 30*time.Second, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
				return err
			}
			if r := meta.FindStatusCondition(sub.Status.Conditions, hooklinev1.ConditionStalled); r == nil || r.Status != metav1.ConditionTrue || r.Reason != hooklinev1.ReasonEndpointGone {
				return fmt.Errorf("Stalled is %+v, want True with reason EndpointGone", r)
			}
			return nil
		})
		second := send(t, map[string]any{"type": "gone.y", "data": 2})
		time.Sleep(2 * time.Second)
		if n := len(rcv.deliveries()); n != 1 {
			t.Errorf("a suspended subscription got %d deliveries, want the one that answered 410", n)
		}

		// The endpoint is back and the spec changes: the held events go out.
		back.Store(true)
		update(ctx, t, c, sub, func() { sub.Spec.URL = rcv.URL + "/?moved=back" })
		waitFor(t, 90*time.Second, func() error {
			got := rcv.ids()
			if got[first] < 2 || got[second] != 1 {
				return fmt.Errorf("after resuming: %v", got)
			}
			return condition(ctx, c, sub, hooklinev1.ConditionSuspended, metav1.ConditionFalse)
		})
	})

	t.Run("spec.suspend holds events and resuming delivers them", func(t *testing.T) {
		rcv := newReceiver(t, nil)
		sub := subscribe(t, "paused", rcv.URL, []string{"paused.>"}, nil)
		update(ctx, t, c, sub, func() { sub.Spec.Suspend = true })
		waitFor(t, 30*time.Second, func() error {
			return condition(ctx, c, sub, hooklinev1.ConditionSuspended, metav1.ConditionTrue)
		})
		// A suspension chosen by the user is no trouble: Ready, reason Suspended.
		waitFor(t, 30*time.Second, func() error {
			if err := ready(ctx, c.admin, sub); err != nil {
				return err
			}
			if r := meta.FindStatusCondition(sub.Status.Conditions, hooklinev1.ConditionReady); r.Reason != hooklinev1.ReasonSuspended {
				return fmt.Errorf("Ready reason %s, want Suspended", r.Reason)
			}
			return nil
		})
		var held []string
		for i := range 3 {
			held = append(held, send(t, map[string]any{"type": "paused.tick", "data": i}))
		}
		time.Sleep(2 * time.Second)
		if n := len(rcv.deliveries()); n != 0 {
			t.Fatalf("a suspended subscription got %d deliveries", n)
		}
		update(ctx, t, c, sub, func() { sub.Spec.Suspend = false })
		waitFor(t, 30*time.Second, func() error {
			got := rcv.ids()
			for _, id := range held {
				if got[id] == 0 {
					return fmt.Errorf("held event %s not delivered after resuming: %v", id, got)
				}
			}
			return nil
		})
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
		// Its events wait in the queue, and its status says so.
		waitFor(t, 30*time.Second, func() error {
			sub := &hooklinev1.WebhookSubscription{}
			if err := c.admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "slow"}, sub); err != nil {
				return err
			}
			if st := sub.Status.Delivery; st == nil || st.Backlog != 20 {
				return fmt.Errorf("delivery status %+v, want a backlog of 20", st)
			}
			return nil
		})
	})

	// A graceful stop withdraws an instance: the dispatcher stops being Ready.
	instances[len(instances)-1].stop(t)
	waitFor(t, 30*time.Second, func() error {
		if err := ready(ctx, c.admin, d); err == nil {
			return fmt.Errorf("the dispatcher is still Ready with an instance stopped")
		}
		return nil
	})
}

// update reads obj afresh, applies mutate and writes it, again on a
// conflict: the dispatcher and the controller write status meanwhile.
func update(ctx context.Context, t *testing.T, c *cluster, obj client.Object, mutate func()) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.admin.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		return c.admin.Update(ctx, obj)
	})
	if err != nil {
		t.Fatalf("updating %s: %v", obj.GetName(), err)
	}
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

// verifyEd25519 checks the v1a signatures of a delivery with the public
// key "whpk_..." per the Standard Webhooks specification.
func verifyEd25519(t *testing.T, publicKey string, d delivery) bool {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(publicKey, "whpk_"))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("public key %q: %v", publicKey, err)
	}
	signed := d.Header.Get("webhook-id") + "." + d.Header.Get("webhook-timestamp") + "." + string(d.Body)
	for _, entry := range strings.Fields(d.Header.Get("webhook-signature")) {
		sig, ok := strings.CutPrefix(entry, "v1a,")
		if !ok {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && ed25519.Verify(raw, []byte(signed), b) {
			return true
		}
	}
	return false
}
