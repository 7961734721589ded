// Command manager runs the Hookline controllers: WebhookSecret,
// WebhookDispatcher and WebhookSubscription.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/controllers"
	"github.com/hookline/hookline/internal/version"
)

// defaultImageRepository is where release images are published; the
// dispatcher image defaults to it at this build's version.
const defaultImageRepository = "ghcr.io/hookline/hookline"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr       string
		metricsSecure     bool
		probeAddr         string
		leaderElect       bool
		leaderElectionNS  string
		dispatcherImage   string
		dispatcherRole    string
		operatorNamespace string
		showVersion       bool
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address the Prometheus metrics endpoint binds to; \"0\" disables it.")
	flag.BoolVar(&metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to callers whose bearer token may get the /metrics URL (checked by TokenReview and SubjectAccessReview); false serves plain HTTP to anyone.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so only one manager replica reconciles at a time.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease; defaults to the operator's namespace.")
	flag.StringVar(&dispatcherImage, "dispatcher-image", defaultImageRepository+":"+version.Version, "Dispatcher image for WebhookDispatchers that do not set spec.image.")
	flag.StringVar(&dispatcherRole, "dispatcher-cluster-role", "hookline-dispatcher", "ClusterRole bound to every dispatcher's ServiceAccount cluster-wide; the one named with the suffix -local is bound in the dispatcher's namespace. The manager's RBAC grants bind on these two names only.")
	flag.StringVar(&operatorNamespace, "operator-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the default WebhookDispatcher (defaults to $POD_NAMESPACE, else hookline-system).")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()

	if showVersion {
		fmt.Println(version.Version)
		return nil
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")
	if operatorNamespace == "" {
		operatorNamespace = "hookline-system"
	}
	if leaderElectionNS == "" {
		leaderElectionNS = operatorNamespace
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("registering Kubernetes kinds: %w", err)
	}
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("registering Hookline kinds: %w", err)
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   controllers.CacheOptions(),
		Metrics:                 metricsOptions(metricsAddr, metricsSecure),
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "hookline-manager.hookline.dev",
		LeaderElectionNamespace: leaderElectionNS,
		// A manager that stops (a rolling update) hands the lease over at
		// once instead of making the next leader wait for it to expire.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	ctx := ctrl.SetupSignalHandler()
	if err := controllers.Setup(ctx, mgr, controllers.Options{
		DefaultDispatcher:     types.NamespacedName{Namespace: operatorNamespace, Name: controllers.DefaultDispatcherName},
		DispatcherImage:       dispatcherImage,
		DispatcherClusterRole: dispatcherRole,
		Clock:                 clock.RealClock{},
	}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", func(req *http.Request) error {
		// Ready once the informer caches have synced.
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("informer caches have not synced")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}

	log.Info("Starting the manager", "version", version.Version, "operatorNamespace", operatorNamespace, "dispatcherImage", dispatcherImage)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the manager: %w", err)
	}
	return nil
}

// metricsOptions serves metrics over HTTPS with authentication and
// authorisation by default, as the metrics carry object names.
func metricsOptions(addr string, secure bool) metricsserver.Options {
	if !secure {
		return metricsserver.Options{BindAddress: addr}
	}
	return metricsserver.Options{
		BindAddress:    addr,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
	}
}
