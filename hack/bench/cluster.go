package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/playground"
	"github.com/hookline/hookline/test/testenv"
)

const (
	operatorNamespace = "hookline-system"
	fieldOwner        = "hookline-bench"
	producerName      = "bench-producer"
	// stopGrace is how long a child may take to stop before it is killed.
	stopGrace = 30 * time.Second
)

var subscriptionsGVR = hooklinev1.GroupVersion.WithResource("webhooksubscriptions")

// cluster is the test API server with the operator's CRDs and RBAC, the
// built manager running as its ServiceAccount, and the dispatchers started
// for the rows.
type cluster struct {
	root, dir string
	progress  io.Writer

	env   *envtest.Environment
	cfg   *rest.Config
	admin client.Client
	kube  kubernetes.Interface
	dyn   dynamic.Interface

	dispatcherBin string
	manager       *playground.Process
	// inProcess runs the dispatchers inside this process, so that a CPU
	// profile of the run covers them.
	inProcess bool
}

// startCluster starts the API server, builds the binaries and starts the
// manager with exactly the RBAC of config/rbac.
func startCluster(ctx context.Context, root, dir string, inProcess bool, progress io.Writer) (c *cluster, err error) {
	c = &cluster{root: root, dir: dir, progress: progress, inProcess: inProcess}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.stop())
			c = nil
		}
	}()
	fmt.Fprintln(progress, "Building cmd/manager and cmd/dispatcher")
	managerBin, dispatcherBin, err := playground.BuildBinaries(ctx, root, filepath.Join(dir, "bin"), progress, clock.RealClock{})
	if err != nil {
		return c, err
	}
	c.dispatcherBin = dispatcherBin
	fmt.Fprintln(progress, "Starting kube-apiserver and etcd")
	c.env, c.cfg, err = testenv.Start()
	if err != nil {
		return c, err
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, hooklinev1.AddToScheme} {
		if err := add(scheme); err != nil {
			return c, fmt.Errorf("registering kinds: %w", err)
		}
	}
	if c.admin, err = client.New(c.cfg, client.Options{Scheme: scheme}); err != nil {
		return c, fmt.Errorf("creating the admin client: %w", err)
	}
	if c.kube, err = kubernetes.NewForConfig(c.cfg); err != nil {
		return c, fmt.Errorf("creating the admin clientset: %w", err)
	}
	if c.dyn, err = dynamic.NewForConfig(c.cfg); err != nil {
		return c, fmt.Errorf("creating the dynamic client: %w", err)
	}
	if err := c.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		return c, fmt.Errorf("creating namespace %s: %w", operatorNamespace, err)
	}
	objs, err := playground.ReadManifests(root, filepath.Join("config", "rbac", "*.yaml"))
	if err != nil {
		return c, err
	}
	for _, u := range objs {
		if err := c.admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner)); err != nil {
			return c, fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	kubeconfig, err := c.serviceAccountKubeconfig(operatorNamespace, "hookline-manager")
	if err != nil {
		return c, err
	}
	fmt.Fprintln(progress, "Starting the manager")
	c.manager, err = playground.StartProcess("manager", filepath.Join(dir, "manager.log"), managerBin,
		"--kubeconfig="+kubeconfig,
		"--leader-elect=false",
		"--operator-namespace="+operatorNamespace,
		"--dispatcher-image=registry.example/hookline:bench",
		"--health-probe-bind-address=0",
		"--metrics-bind-address=0",
		"--webhook-port=0",
	)
	return c, err
}

// stop stops the manager and the API server.
func (c *cluster) stop() error {
	var errs []error
	if c.manager != nil {
		errs = append(errs, c.manager.Stop(stopGrace))
	}
	if c.env != nil {
		if err := c.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the API server: %w", err))
		}
	}
	return errors.Join(errs...)
}

// serviceAccountKubeconfig writes a kubeconfig that the API server takes for
// ServiceAccount ns/name, so exactly the RBAC bound to it applies.
func (c *cluster) serviceAccountKubeconfig(ns, name string) (string, error) {
	return testenv.ServiceAccountKubeconfig(c.env, c.dir, ns, name)
}

// dispatcherProc is one running dispatcher instance.
type dispatcherProc struct {
	name    string
	pid     int
	addrs   playground.DispatcherAddresses
	dataDir string
	stop    func() error
}

// startDispatcher creates the WebhookDispatcher name (admitting every
// namespace and letting deliveries reach loopback over plain HTTP) and runs
// one instance of it with an embedded queue, as its ServiceAccount, with
// the production flags but for the addresses, statusInterval and, when not
// zero, queueMaxBytes (--queue-max-bytes).
func (c *cluster) startDispatcher(ctx context.Context, name string, statusInterval time.Duration, queueMaxBytes int64) (*dispatcherProc, error) {
	wd := &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: operatorNamespace},
		Spec: hooklinev1.WebhookDispatcherSpec{
			AllowedNamespaces: hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromAll},
			Egress:            hooklinev1.EgressPolicy{AllowPlainHTTP: true, AllowedCIDRs: []string{"127.0.0.0/8"}},
		},
	}
	if err := c.admin.Create(ctx, wd); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating WebhookDispatcher %s: %w", name, err)
	}
	kubeconfig, err := c.serviceAccountKubeconfig(operatorNamespace, name+"-dispatcher")
	if err != nil {
		return nil, err
	}
	d := &dispatcherProc{name: name, dataDir: filepath.Join(c.dir, name+"-queue")}
	logPath := filepath.Join(c.dir, "dispatcher-"+name+".log")
	if c.inProcess {
		if err := d.runInProcess(ctx, kubeconfig, logPath, statusInterval, queueMaxBytes); err != nil {
			return nil, err
		}
	} else {
		args := []string{
			"--kubeconfig=" + kubeconfig,
			"--dispatcher-name=" + name,
			"--dispatcher-namespace=" + operatorNamespace,
			"--instance=" + name + "-0",
			"--data-dir=" + d.dataDir,
			"--ingest-bind-address=127.0.0.1:0",
			"--health-probe-bind-address=127.0.0.1:0",
			"--metrics-bind-address=127.0.0.1:0",
			"--status-interval=" + statusInterval.String(),
			"--shutdown-grace=5s",
		}
		if queueMaxBytes > 0 {
			args = append(args, fmt.Sprintf("--queue-max-bytes=%d", queueMaxBytes))
		}
		proc, err := playground.StartProcess("dispatcher "+name, logPath, c.dispatcherBin, args...)
		if err != nil {
			return nil, err
		}
		d.pid, d.stop = proc.PID(), func() error { return proc.Stop(stopGrace) }
		err = poll(ctx, time.Minute, 50*time.Millisecond, "dispatcher "+name+" to listen", func(context.Context) error {
			select {
			case <-proc.Done():
				return fmt.Errorf("dispatcher %s exited: %w (log: %s)", name, proc.ExitError(), logPath)
			default:
			}
			data, err := os.ReadFile(logPath)
			if err != nil {
				return fmt.Errorf("reading the dispatcher log: %w", err)
			}
			var ok bool
			if d.addrs, ok = playground.ParseDispatcherStart(data); !ok {
				return errors.New("no addresses logged yet")
			}
			return nil
		})
		if err != nil {
			return nil, errors.Join(err, d.stop())
		}
	}
	err = poll(ctx, 2*time.Minute, 100*time.Millisecond, "dispatcher "+name+" to be ready", func(ctx context.Context) error {
		if err := httpOK(ctx, "http://"+d.addrs.Health+"/readyz"); err != nil {
			return err
		}
		return c.hasCondition(ctx, wd, hooklinev1.ConditionReady)
	})
	if err != nil {
		return nil, errors.Join(err, d.stop())
	}
	return d, nil
}

// memory reads the dispatcher's resident set.
func (d *dispatcherProc) memory() (memory, error) { return processMemory(d.pid) }

// metric sums the dispatcher's series of a Prometheus metric.
func (d *dispatcherProc) metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addrs.Metrics+"/metrics", nil)
	if err != nil {
		return 0, fmt.Errorf("building the metrics request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping the dispatcher's metrics: %w", err)
	}
	defer resp.Body.Close()
	v, ok, err := sumMetric(resp.Body, name)
	if err != nil {
		return 0, fmt.Errorf("reading the dispatcher's metrics: %w", err)
	}
	if !ok {
		return 0, fmt.Errorf("the dispatcher exports no %s", name)
	}
	return v, nil
}

// sumMetric adds up every sample of the metric name in Prometheus text
// exposition format.
func sumMetric(r io.Reader, name string) (sum float64, found bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // a longer name
		}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return 0, false, fmt.Errorf("malformed sample %q", line)
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, false, fmt.Errorf("malformed sample %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, false, fmt.Errorf("malformed sample %q: %w", line, err)
		}
		sum, found = sum+v, true
	}
	return sum, found, sc.Err()
}

// storedBytes is the size of the files of the streams that hold events
// (the events stream and the backlog stream, to which a subscription that
// cannot keep up moves its events) in the dispatcher's queue directory.
func (d *dispatcherProc) storedBytes() (int64, error) {
	var total int64
	err := filepath.WalkDir(d.dataDir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		sep := string(filepath.Separator)
		if e.IsDir() || !(strings.Contains(path, "_EVENTS"+sep) || strings.Contains(path, "_BACKLOG"+sep)) {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measuring the events and backlog streams' files: %w", err)
	}
	return total, nil
}

// benchNamespace is a namespace with shared WebhookSecrets and a producer
// allowed to publish there.
type benchNamespace struct {
	name    string
	secrets []string
	token   string
}

// prepareNamespace creates namespace ns with n WebhookSecrets, waits for
// them to be Ready, and gets a producer token.
func (c *cluster) prepareNamespace(ctx context.Context, ns string, n int) (*benchNamespace, error) {
	if err := c.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	b := &benchNamespace{name: ns}
	for i := range n {
		ws := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("signing-%d", i), Namespace: ns}}
		if err := c.admin.Create(ctx, ws); err != nil {
			return nil, fmt.Errorf("creating WebhookSecret %s/%s: %w", ns, ws.Name, err)
		}
		if err := poll(ctx, time.Minute, 100*time.Millisecond, "WebhookSecret "+ws.Name+" to be Ready", func(ctx context.Context) error {
			return c.hasCondition(ctx, ws, hooklinev1.ConditionReady)
		}); err != nil {
			return nil, err
		}
		b.secrets = append(b.secrets, ws.Name)
	}
	meta := metav1.ObjectMeta{Name: producerName, Namespace: ns}
	for _, o := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: meta},
		&rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{hooklinev1.GroupVersion.Group}, Resources: []string{"webhookevents"}, Verbs: []string{"create"},
		}}},
		&rbacv1.RoleBinding{ObjectMeta: meta,
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: producerName},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: producerName, Namespace: ns}}},
	} {
		if err := c.admin.Create(ctx, o); err != nil {
			return nil, fmt.Errorf("creating the producer's %T: %w", o, err)
		}
	}
	tr, err := c.kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, producerName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"hookline"}, ExpirationSeconds: ptr.To[int64](4 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting the producer's token: %w", err)
	}
	b.token = tr.Status.Token
	return b, nil
}

// producer publishes into the namespace through dispatcher d.
func (b *benchNamespace) producer(d *dispatcherProc, conns int) producer {
	return producer{client: newHTTPClient(conns), ingest: d.addrs.Ingest, ns: b.name, token: b.token}
}

// subscription is a subscription of namespace b to dispatcher, signing with
// the i-th shared secret (round robin).
func (b *benchNamespace) subscription(name, dispatcher, url string, i int, types ...string) *hooklinev1.WebhookSubscription {
	return &hooklinev1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: b.name},
		Spec: hooklinev1.WebhookSubscriptionSpec{
			URL:           url,
			EventTypes:    types,
			DispatcherRef: &hooklinev1.DispatcherReference{Name: dispatcher, Namespace: operatorNamespace},
			Signing:       hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: b.secrets[i%len(b.secrets)]}},
		},
	}
}

// createAll creates objects with concurrency requests in flight.
func (c *cluster) createAll(ctx context.Context, objs []client.Object, concurrency int) error {
	return parallel(ctx, len(objs), concurrency, func(ctx context.Context, i int) error {
		if err := c.admin.Create(ctx, objs[i]); err != nil {
			return fmt.Errorf("creating %T %s: %w", objs[i], objs[i].GetName(), err)
		}
		return nil
	})
}

// deleteSubscriptions deletes every subscription of ns and waits until they
// are gone.
func (c *cluster) deleteSubscriptions(ctx context.Context, ns string, names ...string) error {
	for _, n := range names {
		sub := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: ns}}
		if err := c.admin.Delete(ctx, sub); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting WebhookSubscription %s/%s: %w", ns, n, err)
		}
	}
	if len(names) == 0 {
		if err := c.admin.DeleteAllOf(ctx, &hooklinev1.WebhookSubscription{}, client.InNamespace(ns)); err != nil {
			return fmt.Errorf("deleting the subscriptions of %s: %w", ns, err)
		}
	}
	return poll(ctx, 5*time.Minute, 500*time.Millisecond, "the subscriptions of "+ns+" to be deleted", func(ctx context.Context) error {
		list := &hooklinev1.WebhookSubscriptionList{}
		if err := c.admin.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		left := 0
		for _, s := range list.Items {
			if len(names) == 0 || slices.Contains(names, s.Name) {
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d left", left)
		}
		return nil
	})
}

// hasCondition says whether obj's condition typ is True for its current
// generation.
func (c *cluster) hasCondition(ctx context.Context, obj client.Object, typ string) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(hooklinev1.GroupVersion.WithKind(kindOf(obj)))
	if err := c.admin.Get(ctx, client.ObjectKeyFromObject(obj), u); err != nil {
		return err
	}
	if !conditionTrue(u, typ) {
		return fmt.Errorf("%s %s is not %s", kindOf(obj), obj.GetName(), typ)
	}
	return nil
}

func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *hooklinev1.WebhookDispatcher:
		return "WebhookDispatcher"
	case *hooklinev1.WebhookSecret:
		return "WebhookSecret"
	default:
		return "WebhookSubscription"
	}
}

// conditionTrue says whether u's condition typ is True and observed its
// current generation.
func conditionTrue(u *unstructured.Unstructured, typ string) bool {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var conds []metav1.Condition
	for _, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		c := metav1.Condition{}
		c.Type, _ = m["type"].(string)
		s, _ := m["status"].(string)
		c.Status = metav1.ConditionStatus(s)
		if g, ok := m["observedGeneration"].(int64); ok {
			c.ObservedGeneration = g
		}
		conds = append(conds, c)
	}
	c := meta.FindStatusCondition(conds, typ)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == u.GetGeneration()
}

// conditionWatch counts the subscriptions of a namespace whose conditions
// are all True, from a watch rather than by listing, so that waiting for
// ten thousand of them loads the API server little.
type conditionWatch struct {
	types  []string
	mu     sync.Mutex
	state  map[string]bool
	trues  atomic.Int64
	cancel context.CancelFunc
}

func (c *cluster) watchConditions(ctx context.Context, ns string, types ...string) (*conditionWatch, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &conditionWatch{types: types, state: map[string]bool{}, cancel: cancel}
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.dyn, 0, ns, nil)
	inf := f.ForResource(subscriptionsGVR).Informer()
	set := func(o any) {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			return
		}
		all := true
		for _, t := range types {
			all = all && conditionTrue(u, t)
		}
		w.set(u.GetName(), all)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, n any) { set(n) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if u, ok := o.(*unstructured.Unstructured); ok {
				w.set(u.GetName(), false)
			}
		},
	})
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		cancel()
		return nil, fmt.Errorf("watching the subscriptions of %s: %w", ns, ctx.Err())
	}
	return w, nil
}

func (w *conditionWatch) set(name string, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state[name] == ok {
		return
	}
	w.state[name] = ok
	if ok {
		w.trues.Add(1)
	} else {
		w.trues.Add(-1)
	}
}

// wait returns once n subscriptions have the condition, and when.
func (w *conditionWatch) wait(ctx context.Context, n int, timeout time.Duration) (time.Time, error) {
	at, err := waitCount(ctx, &w.trues, int64(n), timeout)
	if err != nil {
		return at, fmt.Errorf("waiting for %s: %w", strings.Join(w.types, " and "), err)
	}
	return at, nil
}

func (w *conditionWatch) stop() { w.cancel() }

// closedPort returns a loopback address nothing listens on: an endpoint that
// is down.
func closedPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	return nil
}
