package auth_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/hookline/hookline/internal/auth"
	"github.com/hookline/hookline/test/testenv"
)

var adminConfig *rest.Config

func TestMain(m *testing.M) {
	env, cfg, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	adminConfig = cfg
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the test API server:", err)
	}
	os.Exit(code)
}

// reviewCounter counts the review requests that reach the API server and can
// make them fail, to observe caching from the outside.
type reviewCounter struct {
	tokenReviews  atomic.Int64
	accessReviews atomic.Int64
	fail          atomic.Bool
}

type countingTransport struct {
	next http.RoundTripper
	c    *reviewCounter
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case strings.HasSuffix(req.URL.Path, "/tokenreviews"):
		t.c.tokenReviews.Add(1)
	case strings.HasSuffix(req.URL.Path, "/subjectaccessreviews"):
		t.c.accessReviews.Add(1)
	}
	if t.c.fail.Load() {
		return nil, errors.New("connection refused by the test")
	}
	return t.next.RoundTrip(req)
}

func (c *reviewCounter) counts() (tokenReviews, accessReviews int64) {
	return c.tokenReviews.Load(), c.accessReviews.Load()
}

func countingClient(t *testing.T) (kubernetes.Interface, *reviewCounter) {
	t.Helper()
	c := &reviewCounter{}
	cfg := rest.CopyConfig(adminConfig)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{next: rt, c: c} })
	cfg.Timeout = 30 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, c
}

// producer is a ServiceAccount allowed to publish in one namespace (allowed)
// and not in another (other).
type producer struct {
	allowed, other string
	token          string // audience "hookline"
	otherAudience  string // audience "not-hookline"
	username       string
}

func setupProducer(t *testing.T) producer {
	t.Helper()
	ctx := t.Context()
	admin, err := kubernetes.NewForConfig(adminConfig)
	if err != nil {
		t.Fatal(err)
	}
	ns := func() string {
		n, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "auth-test-"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n.Name
	}
	p := producer{allowed: ns(), other: ns()}

	if _, err := admin.CoreV1().ServiceAccounts(p.allowed).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "producer"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.username = "system:serviceaccount:" + p.allowed + ":producer"
	// The Role and RoleBinding exist in both namespaces; only the allowed
	// one grants the right verb, so the test proves the verb is checked
	// and not merely the existence of a binding.
	for ns, verb := range map[string]string{p.allowed: "create", p.other: "get"} {
		if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "publisher"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{"hookline.dev"},
				Resources: []string{"webhookevents"},
				Verbs:     []string{verb},
			}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "publisher"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "publisher"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "producer", Namespace: p.allowed}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	token := func(audience string) string {
		tr, err := admin.CoreV1().ServiceAccounts(p.allowed).CreateToken(ctx, "producer", &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	p.token = token("hookline")
	p.otherAudience = token("not-hookline")
	return p
}

func TestAuthorize(t *testing.T) {
	p := setupProducer(t)
	client, _ := countingClient(t)
	r := auth.New(client, auth.Options{Audience: "hookline"})

	tests := []struct {
		name      string
		token     string
		namespace string
		want      error
	}{
		{name: "allowed namespace", token: p.token, namespace: p.allowed},
		{name: "namespace with another verb", token: p.token, namespace: p.other, want: auth.ErrForbidden},
		{name: "namespace without binding", token: p.token, namespace: "default", want: auth.ErrForbidden},
		{name: "garbage token", token: "not-a-token", namespace: p.allowed, want: auth.ErrUnauthenticated},
		{name: "token for another audience", token: p.otherAudience, namespace: p.allowed, want: auth.ErrUnauthenticated},
		{name: "empty token", token: "", namespace: p.allowed, want: auth.ErrUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Authorize(t.Context(), tt.token, tt.namespace)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Authorize() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Authorize() = %v, want %v", err, tt.want)
			}
			other := auth.ErrForbidden
			if tt.want == auth.ErrForbidden {
				other = auth.ErrUnauthenticated
			}
			if errors.Is(err, other) {
				t.Errorf("Authorize() = %v, also matches %v", err, other)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestForbiddenNamesUser(t *testing.T) {
	p := setupProducer(t)
	client, _ := countingClient(t)
	r := auth.New(client, auth.Options{})
	err := r.Authorize(t.Context(), p.token, p.other)
	want := fmt.Sprintf("user %q may not create webhookevents.hookline.dev in namespace %q: forbidden", p.username, p.other)
	if err == nil || err.Error() != want {
		t.Fatalf("Authorize() = %v, want %q", err, want)
	}
}

func TestAuthorizeCachesDecisions(t *testing.T) {
	p := setupProducer(t)
	client, counter := countingClient(t)
	clk := clocktesting.NewFakePassiveClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	r := auth.New(client, auth.Options{AllowTTL: 10 * time.Second, DenyTTL: 5 * time.Second, Clock: clk})
	ctx := t.Context()

	type step struct {
		name          string
		advance       time.Duration
		token         func() string
		namespace     func() string
		want          error
		tokenReviews  int64 // requests made by this step
		accessReviews int64
	}
	good := func() string { return p.token }
	garbage := func() string { return "garbage-token" }
	allowed := func() string { return p.allowed }
	other := func() string { return p.other }
	steps := []step{
		{name: "cold cache asks both", token: good, namespace: allowed, tokenReviews: 1, accessReviews: 1},
		{name: "second call is served from cache", token: good, namespace: allowed},
		{name: "new namespace reuses the token decision", token: good, namespace: other, want: auth.ErrForbidden, accessReviews: 1},
		{name: "forbidden is cached", token: good, namespace: other, want: auth.ErrForbidden},
		{name: "garbage token asks once", token: garbage, namespace: allowed, want: auth.ErrUnauthenticated, tokenReviews: 1},
		{name: "unauthenticated is cached", token: garbage, namespace: allowed, want: auth.ErrUnauthenticated},
		{name: "deny TTL expires, allow TTL not yet", advance: 6 * time.Second, token: good, namespace: other, want: auth.ErrForbidden, accessReviews: 1},
		{name: "allowed still cached", token: good, namespace: allowed},
		{name: "unauthenticated expired", token: garbage, namespace: allowed, want: auth.ErrUnauthenticated, tokenReviews: 1},
		{name: "allow TTL expires", advance: 5 * time.Second, token: good, namespace: allowed, tokenReviews: 1, accessReviews: 1},
	}
	for _, s := range steps {
		clk.SetTime(clk.Now().Add(s.advance))
		tr0, ar0 := counter.counts()
		err := r.Authorize(ctx, s.token(), s.namespace())
		if (s.want == nil && err != nil) || !errors.Is(err, s.want) {
			t.Fatalf("%s: Authorize() = %v, want %v", s.name, err, s.want)
		}
		tr1, ar1 := counter.counts()
		if tr1-tr0 != s.tokenReviews || ar1-ar0 != s.accessReviews {
			t.Fatalf("%s: made %d TokenReviews and %d SubjectAccessReviews, want %d and %d",
				s.name, tr1-tr0, ar1-ar0, s.tokenReviews, s.accessReviews)
		}
	}
}

func TestTransientErrorsAreNotCached(t *testing.T) {
	p := setupProducer(t)
	client, counter := countingClient(t)
	r := auth.New(client, auth.Options{})
	ctx := t.Context()

	counter.fail.Store(true)
	err := r.Authorize(ctx, p.token, p.allowed)
	if err == nil || errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("Authorize() with the API server unreachable = %v, want a transient error", err)
	}
	if !strings.HasPrefix(err.Error(), "reviewing the bearer token: ") {
		t.Errorf("error %q does not say what was being done", err)
	}
	if strings.Contains(err.Error(), p.token) {
		t.Errorf("error %q contains the token", err)
	}

	counter.fail.Store(false)
	tr0, _ := counter.counts()
	if err := r.Authorize(ctx, p.token, p.allowed); err != nil {
		t.Fatalf("Authorize() after recovery = %v", err)
	}
	if tr1, _ := counter.counts(); tr1-tr0 != 1 {
		t.Fatalf("made %d TokenReviews after a failed one, want 1 (failure must not be cached)", tr1-tr0)
	}

	// Now the token is cached; a failing access review must not be cached
	// either.
	counter.fail.Store(true)
	err = r.Authorize(ctx, p.token, p.other)
	if err == nil || errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("Authorize() with access review failing = %v, want a transient error", err)
	}
	counter.fail.Store(false)
	if err := r.Authorize(ctx, p.token, p.other); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("Authorize() after recovery = %v, want ErrForbidden", err)
	}
}

func TestConcurrentColdCacheAsksOnce(t *testing.T) {
	p := setupProducer(t)
	client, counter := countingClient(t)
	r := auth.New(client, auth.Options{})

	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = r.Authorize(t.Context(), p.token, p.allowed) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: Authorize() = %v", i, err)
		}
	}
	if tr, ar := counter.counts(); tr != 1 || ar != 1 {
		t.Fatalf("%d concurrent calls made %d TokenReviews and %d SubjectAccessReviews, want 1 and 1", n, tr, ar)
	}
}
