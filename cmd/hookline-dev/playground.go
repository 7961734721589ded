package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/playground"
	"github.com/hookline/hookline/test/testenv"
)

const (
	// fieldOwner is the field manager of what the playground applies.
	fieldOwner = "hookline-dev"
	// stopGrace is how long a child may take to stop before it is killed;
	// the dispatcher is given a shorter shutdown grace than this.
	stopGrace = 20 * time.Second
	// logTail is how many lines of each log are shown when a step fails.
	logTail = 25
)

// playgroundRun is one run of the playground: what it started, and where.
type playgroundRun struct {
	out    io.Writer
	root   string
	binDir string
	clock  clock.WithTicker

	dir        string // the working directory, removed on exit
	kubeconfig string
	env        *envtest.Environment
	admin      client.Client
	kube       kubernetes.Interface
	manager    *playground.Supervised
	dispatcher *playground.Supervised
	addrs      playground.DispatcherAddresses
	tokenFile  string
}

func newPlayground(out io.Writer, cwd, binDir string) (*playgroundRun, error) {
	root, err := playground.FindRepoRoot(cwd)
	if err != nil {
		return nil, err
	}
	if binDir == "" {
		binDir = filepath.Join(root, "bin")
	}
	if binDir, err = filepath.Abs(binDir); err != nil {
		return nil, fmt.Errorf("resolving --bin-dir: %w", err)
	}
	return &playgroundRun{out: out, root: root, binDir: binDir, clock: clock.RealClock{}}, nil
}

func (p *playgroundRun) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(p.out, format, args...)
}

func (p *playgroundRun) step(format string, args ...any) {
	p.printf("\n==> "+format+"\n", args...)
}

// run sets the playground up, waits for ctx to end, and stops everything it
// started whatever happened: each start registers its stop right away, and
// the stops run in reverse order.
func (p *playgroundRun) run(ctx context.Context) (err error) {
	p.printf("Hookline playground, from the sources in %s\n", p.root)

	p.step("Getting kube-apiserver and etcd (hack/envtest.sh: the first run builds them from source, 10 to 25 minutes on two cores)")
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		if assets, err = playground.EnvtestAssets(ctx, p.root, p.out, p.clock); err != nil {
			return err
		}
	}
	p.printf("  using %s\n", assets)

	p.step("Building the manager and the dispatcher (go build -o %s/ ./cmd/manager ./cmd/dispatcher; minutes the first time, seconds later)", p.relative(p.binDir))
	start := p.clock.Now()
	managerBin, dispatcherBin, err := playground.BuildBinaries(ctx, p.root, p.binDir, p.out, p.clock)
	if err != nil {
		return err
	}
	p.printf("  built %s and %s in %s (Go's build cache makes later runs quick)\n",
		p.relative(managerBin), p.relative(dispatcherBin), p.clock.Since(start).Round(100*time.Millisecond))

	if p.dir, err = os.MkdirTemp("", "hookline-dev-"); err != nil {
		return fmt.Errorf("creating the working directory: %w", err)
	}
	defer func() {
		if rmErr := os.RemoveAll(p.dir); rmErr != nil {
			err = errors.Join(err, stopFailed(fmt.Errorf("removing the working directory: %w", rmErr)))
			return
		}
		p.printf("Removed %s\n", p.dir)
	}()
	defer func() {
		// The logs go with the working directory: show their ends first
		// when something failed.
		if err != nil && ctx.Err() == nil {
			p.showLogTails()
		}
	}()
	p.printf("  working directory (removed on exit): %s\n", p.dir)

	p.step("Starting kube-apiserver and etcd with the Hookline CRDs")
	stopControlPlane, err := p.startControlPlane(assets)
	defer func() { err = errors.Join(err, stopFailed(stopControlPlane())) }()
	if err != nil {
		return err
	}
	p.printf("  API server %s, logs %s and %s\n", p.env.Config.Host, p.logPath("apiserver"), p.logPath("etcd"))
	p.printf("  export KUBECONFIG=%s\n", p.kubeconfig)

	p.step("Starting the manager as ServiceAccount %s/hookline-manager, with the RBAC of config/rbac", playground.OperatorNamespace)
	// Registered first: a start that fails half-way may have started it.
	defer func() { err = errors.Join(err, stopFailed(p.stop(p.manager))) }()
	if err := p.startManager(ctx, managerBin); err != nil {
		return err
	}

	p.step("Creating WebhookDispatcher %s/%s and WebhookSecret %s/%s",
		playground.OperatorNamespace, playground.DispatcherName, playground.DemoNamespace, playground.SigningSecretName)
	if err := p.createBase(ctx); err != nil {
		return err
	}

	p.step("Starting one dispatcher instance as ServiceAccount %s/%s-dispatcher", playground.OperatorNamespace, playground.DispatcherName)
	defer func() { err = errors.Join(err, stopFailed(p.stop(p.dispatcher))) }()
	if err := p.startDispatcher(ctx, dispatcherBin); err != nil {
		return err
	}

	p.step("Starting the demo receiver")
	receiverURL, stopReceiver, err := p.startReceiver()
	if err != nil {
		return err
	}
	defer stopReceiver()

	p.step("Creating WebhookSubscriptions %s (to the receiver) and %s (to an endpoint that always answers 500) in namespace %s",
		playground.OrdersSubscription, playground.FlakySubscription, playground.DemoNamespace)
	if err := p.createSubscriptions(ctx, receiverURL); err != nil {
		return err
	}

	p.step("Publishing events as ServiceAccount %s/%s", playground.DemoNamespace, playground.ProducerName)
	if err := p.publish(ctx); err != nil {
		return err
	}

	p.step("Waiting for the deliveries to show in the subscriptions' status")
	if err := p.waitSettled(ctx); err != nil {
		return err
	}
	p.printf("\n$ kubectl get whsub -n %s\n", playground.DemoNamespace)
	if err := p.printSubscriptions(ctx); err != nil {
		return err
	}

	p.printReady()
	// The manager and the dispatcher are restarted should they die.
	<-ctx.Done()
	return nil
}

func (p *playgroundRun) logPath(name string) string {
	return filepath.Join(p.dir, name+".log")
}

// relative shortens paths inside the repository for display.
func (p *playgroundRun) relative(path string) string {
	if rel, err := filepath.Rel(p.root, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

// startControlPlane starts kube-apiserver and etcd with their files and
// logs in the working directory, installs the CRDs and writes an admin
// kubeconfig. The returned stop is safe to call whatever happened.
func (p *playgroundRun) startControlPlane(assets string) (stop func() error, err error) {
	var logs []*os.File
	stop = func() error {
		var errs []error
		if p.env != nil {
			p.printf("Stopping kube-apiserver and etcd\n")
			if err := p.env.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stopping the API server: %w", err))
			}
		}
		for _, f := range logs {
			_ = f.Close()
		}
		return errors.Join(errs...)
	}
	openLog := func(name string) (*os.File, error) {
		f, err := os.OpenFile(p.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("creating the %s log: %w", name, err)
		}
		logs = append(logs, f)
		return f, nil
	}
	apiLog, err := openLog("apiserver")
	if err != nil {
		return stop, err
	}
	etcdLog, err := openLog("etcd")
	if err != nil {
		return stop, err
	}
	certDir, dataDir := filepath.Join(p.dir, "apiserver"), filepath.Join(p.dir, "etcd")
	for _, d := range []string{certDir, dataDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return stop, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	// Their files live in the working directory, so removing it removes
	// every trace of them.
	p.env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(p.root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{CertDir: certDir, Out: apiLog, Err: apiLog},
			Etcd:      &envtest.Etcd{DataDir: dataDir, Out: etcdLog, Err: etcdLog},
		},
	}
	cfg, err := p.env.Start()
	if err != nil {
		return stop, fmt.Errorf("starting kube-apiserver and etcd (see %s): %w", p.logPath("apiserver"), err)
	}
	p.kubeconfig = filepath.Join(p.dir, "kubeconfig")
	if err := writeKubeconfig(p.kubeconfig, p.env.KubeConfig, playground.DemoNamespace); err != nil {
		return stop, err
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, hooklinev1.AddToScheme} {
		if err := add(scheme); err != nil {
			return stop, fmt.Errorf("registering kinds: %w", err)
		}
	}
	if p.admin, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return stop, fmt.Errorf("creating the admin client: %w", err)
	}
	if p.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return stop, fmt.Errorf("creating the admin clientset: %w", err)
	}
	return stop, nil
}

// writeKubeconfig writes the admin kubeconfig raw to path with ns as its
// context's namespace, so kubectl and kubectl hookline work on the demo
// without -n.
func writeKubeconfig(path string, raw []byte, ns string) error {
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return fmt.Errorf("reading the admin kubeconfig: %w", err)
	}
	if ctx := cfg.Contexts[cfg.CurrentContext]; ctx != nil {
		ctx.Namespace = ns
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	return nil
}

// serviceAccountKubeconfig writes a kubeconfig whose client certificate
// the API server takes for ServiceAccount ns/name, so exactly the RBAC
// bound to that account applies, as in a cluster.
func (p *playgroundRun) serviceAccountKubeconfig(ns, name string) (string, error) {
	return testenv.ServiceAccountKubeconfig(p.env, p.dir, ns, name)
}

func (p *playgroundRun) startManager(ctx context.Context, bin string) error {
	for _, ns := range []string{playground.OperatorNamespace, playground.DemoNamespace} {
		if err := p.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	objs, err := playground.ReadManifests(p.root, filepath.Join("config", "rbac", "*.yaml"))
	if err != nil {
		return err
	}
	for _, u := range objs {
		if err := p.admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner)); err != nil {
			return fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	kubeconfig, err := p.serviceAccountKubeconfig(playground.OperatorNamespace, "hookline-manager")
	if err != nil {
		return err
	}
	p.manager, err = playground.Supervise("manager", p.logPath("manager"), bin, []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--operator-namespace=" + playground.OperatorNamespace,
		// Nothing runs the StatefulSet the manager renders: the dispatcher
		// runs as a local process instead.
		"--dispatcher-image=ghcr.io/hookline/hookline:dev",
		"--health-probe-bind-address=0",
		"--metrics-bind-address=0",
		// No API server calls a webhook outside a cluster.
		"--webhook-port=0",
	}, p.out, p.clock)
	if err != nil {
		return err
	}
	p.printf("  manager: pid %d, log %s\n", p.manager.PID(), p.manager.LogPath)
	return nil
}

func (p *playgroundRun) createBase(ctx context.Context) error {
	ws := playground.SigningSecret()
	for _, o := range []client.Object{playground.Dispatcher(), ws} {
		if err := p.admin.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	if err := p.waitFor(ctx, "WebhookSecret "+ws.Name+" to be Ready", func(ctx context.Context) error {
		return p.hasCondition(ctx, ws, hooklinev1.ConditionReady, metav1.ConditionTrue)
	}); err != nil {
		return err
	}
	p.printf("  WebhookSecret %s is Ready: the manager generated its key into Secret %s/%s\n",
		ws.Name, playground.DemoNamespace, ws.SigningSecretName())
	return nil
}

func (p *playgroundRun) startDispatcher(ctx context.Context, bin string) error {
	kubeconfig, err := p.serviceAccountKubeconfig(playground.OperatorNamespace, playground.DispatcherName+"-dispatcher")
	if err != nil {
		return err
	}
	dataDir := filepath.Join(p.dir, "dispatcher-data")
	// The ports are picked once: a restarted dispatcher listens where the
	// first one did, so the printed URLs stay right.
	addrs, err := playground.FreeLocalAddrs(3)
	if err != nil {
		return err
	}
	p.addrs = playground.DispatcherAddresses{Ingest: addrs[0], Health: addrs[1], Metrics: addrs[2]}
	p.dispatcher, err = playground.Supervise("dispatcher", p.logPath("dispatcher"), bin, []string{
		"--kubeconfig=" + kubeconfig,
		"--dispatcher-name=" + playground.DispatcherName,
		"--dispatcher-namespace=" + playground.OperatorNamespace,
		"--instance=" + playground.DispatcherName + "-0",
		"--data-dir=" + dataDir,
		"--ingest-bind-address=" + p.addrs.Ingest,
		"--health-probe-bind-address=" + p.addrs.Health,
		"--metrics-bind-address=" + p.addrs.Metrics,
		// No pod to port-forward to: kubectl hookline finds the ingest
		// API through the address the instance announces.
		"--advertise-ingest-url=http://" + p.addrs.Ingest,
		// Status a second after a delivery, for a quick feedback loop.
		"--status-interval=1s",
		"--shutdown-grace=5s",
	}, p.out, p.clock)
	if err != nil {
		return err
	}
	p.printf("  dispatcher: pid %d, log %s, queue in %s\n", p.dispatcher.PID(), p.dispatcher.LogPath, dataDir)
	if err := p.waitFor(ctx, "the dispatcher to be ready", func(ctx context.Context) error {
		return httpOK(ctx, "http://"+p.addrs.Health+"/readyz")
	}); err != nil {
		return err
	}
	d := playground.Dispatcher()
	if err := p.waitFor(ctx, "WebhookDispatcher "+d.Name+" to be Ready", func(ctx context.Context) error {
		return p.hasCondition(ctx, d, hooklinev1.ConditionReady, metav1.ConditionTrue)
	}); err != nil {
		return err
	}
	p.printf("  ready: ingest http://%s, metrics http://%s/metrics\n", p.addrs.Ingest, p.addrs.Metrics)
	return nil
}

func (p *playgroundRun) startReceiver() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listening for the demo receiver: %w", err)
	}
	keys := playground.SecretKeys(p.kube, playground.DemoNamespace, playground.SigningSecret().SigningSecretName())
	srv := &http.Server{
		Handler:           playground.NewReceiver(keys, p.out),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	url = "http://" + ln.Addr().String()
	p.printf("  listening on %s: /hooks/<subscription> verifies signatures with the keys of Secret %s/%s, /fail/<subscription> answers 500\n",
		url, playground.DemoNamespace, playground.SigningSecretName)
	return url, func() {
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}, nil
}

func (p *playgroundRun) createSubscriptions(ctx context.Context, receiverURL string) error {
	subs := playground.Subscriptions(receiverURL)
	for _, s := range subs {
		if err := p.admin.Create(ctx, s); err != nil {
			return fmt.Errorf("creating WebhookSubscription %s: %w", s.Name, err)
		}
		p.printf("  %s -> %s, event types %s\n", s.Name, s.Spec.URL, strings.Join(s.Spec.EventTypes, ", "))
	}
	// Events published before the dispatcher serves a subscription would
	// not be routed to it.
	for _, s := range subs {
		if err := p.waitFor(ctx, "the dispatcher to accept subscription "+s.Name, func(ctx context.Context) error {
			return p.hasCondition(ctx, s, hooklinev1.ConditionAccepted, metav1.ConditionTrue)
		}); err != nil {
			return err
		}
	}
	p.printf("  both accepted by the dispatcher\n")
	return nil
}

func (p *playgroundRun) publish(ctx context.Context) error {
	sa, role, binding := playground.Producer()
	opSA, opRole, opBinding := playground.Operator()
	for _, o := range []client.Object{sa, role, binding, opSA, opRole, opBinding} {
		if err := p.admin.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	tr, err := p.kube.CoreV1().ServiceAccounts(playground.DemoNamespace).CreateToken(ctx, playground.ProducerName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{playground.ProducerAudience}, ExpirationSeconds: ptr.To[int64](24 * 60 * 60)},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", playground.DemoNamespace, playground.ProducerName, err)
	}
	p.tokenFile = filepath.Join(p.dir, "producer.token")
	if err := os.WriteFile(p.tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		return fmt.Errorf("writing the producer token: %w", err)
	}
	p.printf("  token (audience %q, TokenRequest API) in %s; Role %s allows create on webhookevents.hookline.dev\n",
		playground.ProducerAudience, p.tokenFile, playground.ProducerName)
	for _, e := range playground.DemoEvents() {
		id, err := playground.Publish(ctx, "http://"+p.addrs.Ingest, tr.Status.Token, playground.DemoNamespace, e)
		if err != nil {
			return err
		}
		p.printf("  published %s id=%s (202 Accepted)\n", e.Type, id)
	}
	return nil
}

// waitSettled waits until the status shows what the published events did:
// "orders" delivered all of them and is Ready, "flaky" is unhealthy and so
// not Ready.
func (p *playgroundRun) waitSettled(ctx context.Context) error {
	want := int64(len(playground.DemoEvents()))
	orders := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: playground.DemoNamespace, Name: playground.OrdersSubscription}}
	flaky := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: playground.DemoNamespace, Name: playground.FlakySubscription}}
	return p.waitFor(ctx, "the deliveries to show in status", func(ctx context.Context) error {
		for _, c := range []struct {
			sub    *hooklinev1.WebhookSubscription
			typ    string
			status metav1.ConditionStatus
		}{
			{orders, hooklinev1.ConditionEndpointHealthy, metav1.ConditionTrue},
			{orders, hooklinev1.ConditionReady, metav1.ConditionTrue},
			{flaky, hooklinev1.ConditionEndpointHealthy, metav1.ConditionFalse},
			{flaky, hooklinev1.ConditionReady, metav1.ConditionFalse},
		} {
			if err := p.hasCondition(ctx, c.sub, c.typ, c.status); err != nil {
				return err
			}
		}
		if st := orders.Status.Delivery; st == nil || st.Delivered < want {
			return fmt.Errorf("subscription orders reports %+v delivered, want %d", st, want)
		}
		return nil
	})
}

func (p *playgroundRun) printSubscriptions(ctx context.Context) error {
	table, err := playground.GetTable(ctx, p.kube.Discovery().RESTClient(),
		"/apis/"+hooklinev1.GroupVersion.String()+"/namespaces/"+playground.DemoNamespace+"/webhooksubscriptions")
	if err != nil {
		return err
	}
	return playground.PrintTable(p.out, table)
}

func (p *playgroundRun) printReady() {
	ingest := "http://" + p.addrs.Ingest
	var examples strings.Builder
	for _, e := range playground.PluginExamples() {
		fmt.Fprintf(&examples, "    %s\n        # %s\n", e.Command, e.Shows)
	}
	p.printf(`
Playground ready
  kubeconfig:  export KUBECONFIG=%[1]s   (namespace %[4]s)
               kubectl get hookline -A; kubectl describe whsub flaky
  ingest API:  %[2]s
  publish an event as ServiceAccount %[4]s/%[5]s:
    curl -i -X POST %[2]s/v1/namespaces/%[4]s/events \
      -H "Authorization: Bearer $(cat %[3]s)" \
      -H 'Content-Type: application/json' \
      -d '{"type":"order.created","data":{"order":1003,"total":99}}'
  kubectl hookline (make plugin, then put bin/ on the PATH):
%[9]s  logs:        %[6]s
               %[7]s
The manager and the dispatcher are restarted if they die (try kill -9 on the dispatcher: nothing published is lost).
Deliveries are printed as they arrive. Ctrl-C stops everything and removes %[8]s
`, p.kubeconfig, ingest, p.tokenFile, playground.DemoNamespace, playground.ProducerName,
		p.manager.LogPath, p.dispatcher.LogPath, p.dir, examples.String())
}

// stop stops proc, if it was started, and keeps it from being restarted.
func (p *playgroundRun) stop(proc *playground.Supervised) error {
	if proc == nil {
		return nil
	}
	p.printf("Stopping the %s (pid %d)\n", proc.Name, proc.PID())
	return proc.Stop(stopGrace)
}

// waitFor polls check until it succeeds or ctx ends. It has no deadline:
// a slow machine only takes longer, and every playground.QuietInterval a
// line says what is awaited and what is missing, so Ctrl-C is an informed
// choice. The manager and the dispatcher are restarted should they die
// meanwhile, so a wait survives that too.
func (p *playgroundRun) waitFor(ctx context.Context, what string, check func(context.Context) error) error {
	start := p.clock.Now()
	lastSaid := start
	var last error
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if last = check(ctx); last == nil {
			return true, nil
		}
		if p.clock.Since(lastSaid) >= playground.QuietInterval {
			lastSaid = p.clock.Now()
			p.printf("  still waiting for %s (%s so far): %v\n", what, p.clock.Since(start).Truncate(time.Second), last)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// hasCondition reads obj afresh and reports nil once its condition typ has
// status want for the current generation.
func (p *playgroundRun) hasCondition(ctx context.Context, obj client.Object, typ string, want metav1.ConditionStatus) error {
	if err := p.admin.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return fmt.Errorf("reading %s: %w", obj.GetName(), err)
	}
	conds := obj.(interface{ GetConditions() []metav1.Condition }).GetConditions()
	c := meta.FindStatusCondition(conds, typ)
	if c == nil || c.Status != want || c.ObservedGeneration != obj.GetGeneration() {
		got := "absent"
		if c != nil {
			got = fmt.Sprintf("%s (%s: %s)", c.Status, c.Reason, c.Message)
		}
		return fmt.Errorf("%s of %s is %s, want %s", typ, obj.GetName(), got, want)
	}
	return nil
}

func (p *playgroundRun) showLogTails() {
	for _, name := range []string{"manager", "dispatcher", "apiserver"} {
		if st, err := os.Stat(p.logPath(name)); err != nil || st.Size() == 0 {
			continue
		}
		fmt.Fprintf(os.Stderr, "--- last lines of the %s log ---\n%s", name, tail(p.logPath(name), logTail))
	}
}

// tail is the last n lines of the file at path.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)\n", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))) + "\n"
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("building a request to %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probing %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64*1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probing %s: %s", url, resp.Status)
	}
	return nil
}

// stopError is a failure to stop or remove something the playground
// started: reported whatever the reason the playground ended.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// stopFailed wraps a failure to stop something in a stopError.
func stopFailed(err error) error {
	if err == nil {
		return nil
	}
	return &stopError{err}
}
