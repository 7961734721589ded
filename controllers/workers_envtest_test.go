package controllers

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/test/testenv"
)

// statusGate holds every status write of a subscription in one namespace
// until want of them are in flight together, which only happens if that
// many subscriptions are reconciled at once.
type statusGate struct {
	prefix string
	want   int
	// giveUp is when the test gives up waiting for the gate to open.
	giveUp time.Time

	mu       sync.Mutex
	inFlight int
	most     int
	open     chan struct{}
}

func (g *statusGate) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method != http.MethodPatch || !strings.HasPrefix(req.URL.Path, g.prefix) || !strings.HasSuffix(req.URL.Path, "/status") {
			return rt.RoundTrip(req)
		}
		g.mu.Lock()
		g.inFlight++
		g.most = max(g.most, g.inFlight)
		if g.inFlight == g.want {
			close(g.open)
		}
		g.mu.Unlock()
		// Held until the test gives up at the latest; a gate never
		// opened must not wedge the manager's shutdown.
		select {
		case <-g.open:
		case <-req.Context().Done():
		case <-time.After(time.Until(g.giveUp)):
		}
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

func (g *statusGate) mostInFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.most
}

// TestSubscriptionsReconcileConcurrently runs the controllers, as
// cmd/manager sets them up with SubscriptionWorkers, in a manager of its
// own watching one namespace, and holds each subscription status write
// until as many are in flight as there are workers: they get there only if
// that many subscriptions are reconciled at once. Then every one of them
// reaches its status.
func TestSubscriptionsReconcileConcurrently(t *testing.T) {
	const workers = 4
	ns := newNamespace(t)
	whsubAvailableDispatcher(t, ns, "d", nil)
	whsubWebhookSecret(t, ns, "s")
	var subs []*hooklinev1.WebhookSubscription
	for i := range workers {
		subs = append(subs, whsubSubscription(t, ns, fmt.Sprintf("parallel-%d", i), nil))
	}

	gate := &statusGate{
		prefix: "/apis/" + hooklinev1.GroupVersion.String() + "/namespaces/" + ns + "/webhooksubscriptions/",
		want:   workers,
		giveUp: testenv.GiveUpAt(t),
		open:   make(chan struct{}),
	}
	startNamespacedManager(t, ns, gate.wrap, workers)

	select {
	case <-gate.open:
	case <-time.After(time.Until(testenv.GiveUpAt(t))):
		t.Fatalf("at most %d subscription status writes were in flight together, want %d", gate.mostInFlight(), workers)
	}
	for _, sub := range subs {
		whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonAwaitingDispatcher)
	}
}

func TestSetupRefusesNegativeWorkers(t *testing.T) {
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 k8sClient.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatalf("creating the manager: %v", err)
	}
	err = Setup(suiteCtx, mgr, Options{SubscriptionWorkers: -1, Clock: testClock})
	if want := "subscription workers must be at least 1, got -1"; err == nil || err.Error() != want {
		t.Errorf("Setup error = %v, want %q", err, want)
	}
}
