package controllers

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/admission"
	"github.com/hookline/hookline/test/testenv"
)

// The envtest suite: the real reconcilers run in a manager against a real
// kube-apiserver and etcd with the real CRDs. Each test works in a namespace
// of its own (newNamespace).
var (
	// k8sClient talks to the API server directly, without the manager's cache,
	// so tests see what the server stores.
	k8sClient client.Client
	// restConfig reaches the test API server as an administrator.
	restConfig *rest.Config
	// testClock drives every reconciler's notion of now. It only moves
	// forward; tests that step it run in their own namespace and do not run
	// in parallel with tests that depend on time.
	testClock = clocktesting.NewFakeClock(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	// suiteCtx is cancelled when the suite ends.
	suiteCtx context.Context
)

const (
	// testOperatorNamespace is where the default dispatcher lives.
	testOperatorNamespace = "hookline-system"
	// testDispatcherImage is the image the manager is configured with.
	testDispatcherImage = "registry.example/hookline/hookline:test"
	// testDispatcherClusterRole is the ClusterRole bound to dispatchers.
	testDispatcherClusterRole = "hookline-dispatcher"
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	env, cfg, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test API server:", err)
		}
	}()

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	restConfig = cfg
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the test client:", err)
		return 1
	}

	// The admission webhook, as the manager serves it: the real API server
	// calls it over TLS with the CA the keeper generated and injected.
	keeper, webhookServer, err := startWebhookConfiguration(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer:          webhookServer,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the manager:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	suiteCtx = ctx
	if err := Setup(ctx, mgr, Options{
		DefaultDispatcher:     types.NamespacedName{Namespace: testOperatorNamespace, Name: DefaultDispatcherName},
		DispatcherImage:       testDispatcherImage,
		DispatcherClusterRole: testDispatcherClusterRole,
		Clock:                 testClock,
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testOperatorNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, "creating the operator namespace:", err)
		return 1
	}
	admission.Register(mgr.GetWebhookServer())
	keeper.Client = k8sClient
	if err := keeper.Sync(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "creating the webhook certificate:", err)
		return 1
	}
	if err := mgr.Add(keeper); err != nil {
		fmt.Fprintln(os.Stderr, "adding the webhook certificate keeper:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	if err := waitForWebhook(ctx, webhookServer); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	return code
}

// zapLevel keeps the suite quiet unless HOOKLINE_TEST_VERBOSE is set.
func zapLevel() zapcore.Level {
	if os.Getenv("HOOKLINE_TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// newNamespace creates a namespace of the test's own and returns its name.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	if err := k8sClient.Create(suiteCtx, ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// eventually polls cond until it returns true. A slow machine only makes
// it wait longer: once the wait passes expected, it logs the last message
// cond gave, and it fails the test with that message only when the test
// binary's -timeout is about to end the run (testenv.GiveUpAt).
func eventually(t *testing.T, expected time.Duration, cond func() (bool, string)) {
	t.Helper()
	start := time.Now()
	giveUp := testenv.GiveUpAt(t)
	logged := false
	var msg string
	for {
		var ok bool
		ok, msg = cond()
		if ok {
			return
		}
		if !logged && time.Since(start) > expected {
			t.Logf("still waiting after %s: %s", expected, msg)
			logged = true
		}
		if time.Now().After(giveUp) {
			t.Fatalf("condition not met after %s: %s", time.Since(start).Round(time.Second), msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
