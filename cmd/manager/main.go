// Command manager runs the Hookline controllers: WebhookSecret,
// WebhookDispatcher and WebhookSubscription.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/controllers"
	"github.com/hookline/hookline/internal/admission"
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

// config is what the command line sets.
type config struct {
	metricsAddr       string
	metricsSecure     bool
	probeAddr         string
	leaderElect       bool
	leaderElectionNS  string
	dispatcherImage   string
	dispatcherRole    string
	operatorNamespace string
	showVersion       bool
	// subscriptionWorkers is how many WebhookSubscriptions are reconciled
	// at once.
	subscriptionWorkers int
	// kubeQPS and kubeBurst limit the Kubernetes client on the manager's
	// side; a kubeQPS of 0 sets no such limit.
	kubeQPS   float64
	kubeBurst int
	// webhookPort serves the validating admission webhook; 0 turns it off.
	webhookPort int
	// webhookCertDir holds tls.crt and tls.key written by cert-manager; when
	// empty, the manager keeps its own CA and certificate in
	// webhookCertSecret.
	webhookCertDir    string
	webhookCertSecret string
	webhookService    string
	webhookConfig     string
	zap               zap.Options
}

// parseFlags reads args into a config with fs, which must not have these
// flags yet, and checks the values: the error names the flag.
func parseFlags(fs *flag.FlagSet, args []string) (config, error) {
	var c config
	fs.StringVar(&c.metricsAddr, "metrics-bind-address", ":8443", "Address the Prometheus metrics endpoint binds to; \"0\" disables it.")
	fs.BoolVar(&c.metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to callers whose bearer token may get the /metrics URL (checked by TokenReview and SubjectAccessReview); false serves plain HTTP to anyone.")
	fs.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	fs.BoolVar(&c.leaderElect, "leader-elect", false, "Elect a leader so only one manager replica reconciles at a time.")
	fs.StringVar(&c.leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease; defaults to the operator's namespace.")
	fs.StringVar(&c.dispatcherImage, "dispatcher-image", defaultImageRepository+":"+version.Version, "Dispatcher image for WebhookDispatchers that do not set spec.image.")
	fs.StringVar(&c.dispatcherRole, "dispatcher-cluster-role", "hookline-dispatcher", "ClusterRole bound to every dispatcher's ServiceAccount cluster-wide; the one named with the suffix -local is bound in the dispatcher's namespace. The manager's RBAC grants bind on these two names only.")
	fs.StringVar(&c.operatorNamespace, "operator-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the default WebhookDispatcher (defaults to $POD_NAMESPACE, else hookline-system).")
	fs.IntVar(&c.subscriptionWorkers, "subscription-workers", controllers.DefaultSubscriptionWorkers, "How many WebhookSubscriptions are reconciled at once; each reconcile mostly waits for one status write to the API server.")
	fs.Float64Var(&c.kubeQPS, "kube-api-qps", 0, "Requests per second the manager may send to the API server on average; 0 sets no limit in the manager and leaves it to the API server's priority and fairness.")
	fs.IntVar(&c.kubeBurst, "kube-api-burst", 0, "Requests the manager may send at once above --kube-api-qps; 0 means twice --kube-api-qps. Needs --kube-api-qps.")
	fs.IntVar(&c.webhookPort, "webhook-port", 9443, "Port of the validating admission webhook, which refuses WebhookSubscriptions whose filter does not compile; 0 turns it off.")
	fs.StringVar(&c.webhookCertDir, "webhook-cert-dir", "", "Directory holding the webhook's tls.crt and tls.key (from cert-manager); when empty the manager generates a CA and a certificate itself, keeps them in --webhook-cert-secret and injects the CA into --webhook-configuration.")
	fs.StringVar(&c.webhookCertSecret, "webhook-cert-secret", "hookline-webhook-tls", "Secret, in the operator's namespace, where the manager keeps the webhook's CA and certificate.")
	fs.StringVar(&c.webhookService, "webhook-service", "hookline-webhook", "Service, in the operator's namespace, through which the API server calls the webhook: the certificate's DNS names.")
	fs.StringVar(&c.webhookConfig, "webhook-configuration", "hookline-validating-webhook", "ValidatingWebhookConfiguration that receives the CA bundle.")
	fs.BoolVar(&c.showVersion, "version", false, "Print the version and exit.")
	c.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if c.subscriptionWorkers < 1 {
		return config{}, fmt.Errorf("--subscription-workers must be at least 1, got %d", c.subscriptionWorkers)
	}
	if math.IsNaN(c.kubeQPS) || math.IsInf(c.kubeQPS, 0) || c.kubeQPS < 0 {
		return config{}, fmt.Errorf("--kube-api-qps must be a positive number, or 0 for no limit in the manager, got %v", c.kubeQPS)
	}
	if c.kubeBurst < 0 {
		return config{}, fmt.Errorf("--kube-api-burst must be positive, or 0 for twice --kube-api-qps, got %d", c.kubeBurst)
	}
	if c.kubeBurst > 0 && c.kubeQPS == 0 {
		return config{}, errors.New("--kube-api-burst needs --kube-api-qps: without it the manager sets no limit")
	}
	if c.operatorNamespace == "" {
		c.operatorNamespace = "hookline-system"
	}
	if c.leaderElectionNS == "" {
		c.leaderElectionNS = c.operatorNamespace
	}
	if c.webhookPort < 0 || c.webhookPort > 65535 {
		return config{}, fmt.Errorf("--webhook-port must be from 1 to 65535, or 0 to turn the webhook off, got %d", c.webhookPort)
	}
	return c, nil
}

// rateLimit sets the client-side limit of cfg from c. Without --kube-api-qps
// it keeps what controller-runtime's configuration has (no limit: the API
// server's priority and fairness shares its capacity); client-go's own
// default of 5 requests per second would hold several workers to a few
// status writes a second.
func (c config) rateLimit(cfg *rest.Config) {
	if c.kubeQPS == 0 {
		return
	}
	cfg.QPS = float32(c.kubeQPS)
	cfg.Burst = c.kubeBurst
	if cfg.Burst == 0 {
		cfg.Burst = max(1, int(math.Ceil(2*c.kubeQPS)))
	}
}

func run() error {
	c, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		return err
	}
	if c.showVersion {
		fmt.Println(version.Version)
		return nil
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&c.zap)))
	log := ctrl.Log.WithName("setup")

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
	c.rateLimit(cfg)
	webhookServer, keeper, err := c.webhookServer(cfg, scheme)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		WebhookServer:           webhookServer,
		Scheme:                  scheme,
		Cache:                   controllers.CacheOptions(),
		Metrics:                 metricsOptions(c.metricsAddr, c.metricsSecure),
		HealthProbeBindAddress:  c.probeAddr,
		LeaderElection:          c.leaderElect,
		LeaderElectionID:        "hookline-manager.hookline.dev",
		LeaderElectionNamespace: c.leaderElectionNS,
		// A manager that stops (a rolling update) hands the lease over at
		// once instead of making the next leader wait for it to expire.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	ctx := ctrl.SetupSignalHandler()
	if err := controllers.Setup(ctx, mgr, controllers.Options{
		DefaultDispatcher:     types.NamespacedName{Namespace: c.operatorNamespace, Name: controllers.DefaultDispatcherName},
		DispatcherImage:       c.dispatcherImage,
		DispatcherClusterRole: c.dispatcherRole,
		SubscriptionWorkers:   c.subscriptionWorkers,
		Clock:                 clock.RealClock{},
	}); err != nil {
		return err
	}
	if webhookServer != nil {
		admission.Register(mgr.GetWebhookServer())
		if keeper != nil {
			if err := mgr.Add(keeper); err != nil {
				return fmt.Errorf("adding the webhook certificate keeper: %w", err)
			}
			if err := mgr.AddReadyzCheck("webhook-certificate", keeper.Loaded); err != nil {
				return fmt.Errorf("adding the webhook certificate check: %w", err)
			}
		}
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

	log.Info("Starting the manager", "version", version.Version, "operatorNamespace", c.operatorNamespace, "dispatcherImage", c.dispatcherImage,
		"subscriptionWorkers", c.subscriptionWorkers, "kubeAPIQPS", c.kubeQPS, "kubeAPIBurst", cfg.Burst)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the manager: %w", err)
	}
	return nil
}

// webhookServer is the admission webhook's server, nil when it is turned
// off, with the keeper of its certificate unless cert-manager provides it.
func (c config) webhookServer(cfg *rest.Config, scheme *runtime.Scheme) (webhook.Server, *admission.CertKeeper, error) {
	if c.webhookPort == 0 {
		return nil, nil, nil
	}
	if c.webhookCertDir != "" {
		return webhook.NewServer(webhook.Options{Port: c.webhookPort, CertDir: c.webhookCertDir}), nil, nil
	}
	// The keeper reads Secrets straight from the API server: the manager's
	// cache keeps no Secret contents.
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, fmt.Errorf("creating the webhook certificate client: %w", err)
	}
	keeper := &admission.CertKeeper{
		Client:               cl,
		Secret:               types.NamespacedName{Namespace: c.operatorNamespace, Name: c.webhookCertSecret},
		WebhookConfiguration: c.webhookConfig,
		DNSNames: []string{
			c.webhookService + "." + c.operatorNamespace + ".svc",
			c.webhookService + "." + c.operatorNamespace + ".svc.cluster.local",
		},
		Clock: clock.RealClock{},
	}
	server := webhook.NewServer(webhook.Options{Port: c.webhookPort, TLSOpts: []func(*tls.Config){func(t *tls.Config) {
		t.GetCertificate = keeper.GetCertificate
	}}})
	return server, keeper, nil
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
