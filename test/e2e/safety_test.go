package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/test/testenv"
)

// safety is one dispatcher with its producers, for the delivery safety
// tests: endpoint controls a user declares on subscriptions.
type safety struct {
	c     *cluster
	ctx   context.Context
	ns    string
	disp  *dispatcherProc
	token string
}

func (s *safety) subscribe(t *testing.T, name, url string, types []string, mutate func(*hooklinev1.WebhookSubscription)) *hooklinev1.WebhookSubscription {
	t.Helper()
	return createSubscription(s.ctx, t, s.c, s.ns, name, url, types, mutate)
}

// createSubscription creates a subscription to the dispatcher "default",
// signed with the WebhookSecret "signing", with quick retries; mutate
// changes it before it is created.
func createSubscription(ctx context.Context, t *testing.T, c *cluster, ns, name, url string, types []string,
	mutate func(*hooklinev1.WebhookSubscription)) *hooklinev1.WebhookSubscription {
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
	return sub
}

func (s *safety) accepted(t *testing.T, sub *hooklinev1.WebhookSubscription) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		return condition(s.ctx, s.c, sub, hooklinev1.ConditionAccepted, metav1.ConditionTrue)
	})
}

func (s *safety) send(t *testing.T, event map[string]any) string {
	t.Helper()
	code, body, err := publish(s.disp.ingest, s.token, s.ns, event)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("publishing %v: %d %v %v", event, code, body, err)
	}
	return body["id"].(string)
}

// waitCount waits until rcv has at least n requests.
func waitCount(t *testing.T, rcv *receiver, n int, timeout time.Duration) []delivery {
	t.Helper()
	waitFor(t, timeout, func() error {
		if got := len(rcv.deliveries()); got < n {
			return fmt.Errorf("%d of %d requests", got, n)
		}
		return nil
	})
	return rcv.deliveries()
}

func conditionOf(ctx context.Context, t *testing.T, c *cluster, sub *hooklinev1.WebhookSubscription, typ string) *metav1.Condition {
	t.Helper()
	if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
		t.Fatal(err)
	}
	return meta.FindStatusCondition(sub.Status.Conditions, typ)
}

// TestDeliverySafety runs the endpoint controls against the built binaries:
// a dispatcher that allows plain HTTP to 127.0.0.0/8 only, and a strict one
// with the default egress policy.
func TestDeliverySafety(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	s := &safety{c: c, ctx: ctx, ns: "safety"}
	if err := c.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}}); err != nil {
		t.Fatal(err)
	}
	d := &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: operatorNamespace},
		Spec: hooklinev1.WebhookDispatcherSpec{
			AllowedNamespaces: hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromAll},
			Egress:            hooklinev1.EgressPolicy{AllowPlainHTTP: true, AllowedCIDRs: []string{"127.0.0.1/32"}},
		},
	}
	strict := &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: "strict", Namespace: operatorNamespace},
		Spec: hooklinev1.WebhookDispatcherSpec{
			AllowedNamespaces: hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromAll},
			Egress:            hooklinev1.EgressPolicy{AllowPlainHTTP: true},
		},
	}
	ws := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Name: "signing", Namespace: s.ns}}
	for _, o := range []client.Object{d, strict, ws} {
		if err := c.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, func() error { return ready(ctx, c.admin, ws) })
	s.disp = c.startDispatcher(t, operatorNamespace, "default", "safety-0", "--data-dir="+t.TempDir())
	strictProc := c.startDispatcher(t, operatorNamespace, "strict", "strict-0", "--data-dir="+t.TempDir())
	s.disp.waitReady(t)
	strictProc.waitReady(t)
	s.token = c.producerToken(ctx, t, s.ns)

	t.Run("egress guard", func(t *testing.T) {
		rcv := newReceiver(t, nil)
		port := rcv.URL[strings.LastIndex(rcv.URL, ":"):]
		toStrict := func(sub *hooklinev1.WebhookSubscription) {
			sub.Spec.DispatcherRef = &hooklinev1.DispatcherReference{Name: "strict", Namespace: operatorNamespace}
		}
		// An address the policy denies is refused when the subscription
		// is read, with the rule in the message.
		literal := s.subscribe(t, "egress-literal", "http://127.0.0.2"+port+"/", []string{"egress.*"}, nil)
		waitFor(t, 30*time.Second, func() error {
			return condition(ctx, c, literal, hooklinev1.ConditionAccepted, metav1.ConditionFalse)
		})
		if cond := conditionOf(ctx, t, c, literal, hooklinev1.ConditionAccepted); cond.Reason != hooklinev1.ReasonURLNotAllowed ||
			!strings.Contains(cond.Message, "127.0.0.2") || !strings.Contains(cond.Message, "loopback") {
			t.Errorf("Accepted = %+v, want URLNotAllowed naming the loopback address", cond)
		}
		// A name is checked on the address it resolves to, when dialled.
		named := s.subscribe(t, "egress-named", "http://localhost"+port+"/", []string{"egress.*"}, toStrict)
		s.accepted(t, named)
		// Each dispatcher has its own queue: publish through the strict one.
		if code, body, err := publish(strictProc.ingest, s.token, s.ns, map[string]any{"type": "egress.test", "data": 1}); err != nil || code != http.StatusAccepted {
			t.Fatalf("publishing: %d %v %v", code, body, err)
		}
		waitFor(t, 30*time.Second, func() error {
			return condition(ctx, c, named, hooklinev1.ConditionEndpointHealthy, metav1.ConditionFalse)
		})
		cond := conditionOf(ctx, t, c, named, hooklinev1.ConditionEndpointHealthy)
		if cond.Reason != hooklinev1.ReasonEgressDenied || !strings.Contains(cond.Message, "loopback address") {
			t.Errorf("EndpointHealthy = %+v, want EgressDenied naming the loopback rule", cond)
		}
		waitFor(t, 30*time.Second, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(named), named); err != nil {
				return err
			}
			if st := named.Status.Delivery; st == nil || st.DeadLettered != 1 || st.Failed != 1 {
				return fmt.Errorf("delivery status %+v, want 1 attempt dead-lettered at once", st)
			}
			return nil
		})
		if n := len(rcv.deliveries()); n != 0 {
			t.Errorf("the receiver got %d requests through a denied address", n)
		}
	})

	t.Run("rate limit holds across workers", func(t *testing.T) {
		rcv := newReceiver(t, nil)
		const rps, events = 20, 60
		sub := s.subscribe(t, "limited", rcv.URL+"/", []string{"limited.*"}, func(sub *hooklinev1.WebhookSubscription) {
			sub.Spec.Delivery.Concurrency = 10
			sub.Spec.Delivery.RateLimit = &hooklinev1.RateLimit{RequestsPerSecond: rps, Burst: 1}
		})
		s.accepted(t, sub)
		for i := range events {
			s.send(t, map[string]any{"type": "limited.tick", "data": i})
		}
		got := waitCount(t, rcv, events, 60*time.Second)
		span := got[len(got)-1].At.Sub(got[0].At)
		rate := float64(len(got)-1) / span.Seconds()
		t.Logf("%d deliveries in %s: %.1f/s against a limit of %d/s", len(got), span.Round(time.Millisecond), rate, rps)
		if rate > rps*1.1 || rate < rps*0.9 {
			t.Errorf("delivery rate %.1f/s, want within 10%% of %d/s", rate, rps)
		}
		if ids := rcv.ids(); len(ids) != events {
			t.Errorf("%d distinct events delivered, want %d: excess must wait, not be dropped", len(ids), events)
		}
	})

	t.Run("Retry-After on 429 pauses the endpoint", func(t *testing.T) {
		var mu sync.Mutex
		throttled := false
		rcv := newReceiver(t, func(w http.ResponseWriter, attempt int) {
			mu.Lock()
			first := !throttled
			throttled = true
			mu.Unlock()
			if first {
				w.Header().Set("Retry-After", "2")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
		sub := s.subscribe(t, "throttled", rcv.URL+"/", []string{"throttled.*"}, func(sub *hooklinev1.WebhookSubscription) {
			sub.Spec.Delivery.Concurrency = 1
		})
		s.accepted(t, sub)
		for i := range 5 {
			s.send(t, map[string]any{"type": "throttled.tick", "data": i})
		}
		got := waitCount(t, rcv, 6, 60*time.Second)
		if gap := got[1].At.Sub(got[0].At); gap < 1900*time.Millisecond {
			t.Errorf("the request after a 429 with Retry-After: 2 came %s later, want at least 2s", gap)
		}
		// Afterwards the rate recovers step by step rather than at once.
		t.Logf("gaps after the pause: %s", gaps(got[1:]))
	})

	t.Run("ordered delivery with failures and retries", func(t *testing.T) {
		rnd := rand.New(rand.NewPCG(1, 2))
		var rndMu sync.Mutex
		var seqMu sync.Mutex
		var accepted, attempts []int
		const events = 25
		rcv := newWrappedReceiver(t, func(http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				var body struct {
					Data struct{ Seq int } `json:"data"`
				}
				_ = json.NewDecoder(req.Body).Decode(&body)
				rndMu.Lock()
				fail := rnd.IntN(10) < 3
				rndMu.Unlock()
				seqMu.Lock()
				attempts = append(attempts, body.Data.Seq)
				if !fail {
					accepted = append(accepted, body.Data.Seq)
				}
				seqMu.Unlock()
				if fail {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			})
		})
		sub := s.subscribe(t, "ordered", rcv.URL+"/", []string{"ledger.*"}, func(sub *hooklinev1.WebhookSubscription) {
			sub.Spec.Delivery.Ordering = hooklinev1.OrderingOrdered
			sub.Spec.Delivery.Concurrency = 10
			sub.Spec.Delivery.Retry.InitialBackoff = &metav1.Duration{Duration: 100 * time.Millisecond}
			sub.Spec.Delivery.Retry.MaxBackoff = &metav1.Duration{Duration: time.Second}
			sub.Spec.Delivery.Retry.MaxAttempts = 100
		})
		s.accepted(t, sub)
		for i := range events {
			s.send(t, map[string]any{"type": "ledger.entry", "data": map[string]any{"seq": i}})
		}
		waitFor(t, 90*time.Second, func() error {
			seqMu.Lock()
			defer seqMu.Unlock()
			if len(accepted) < events {
				return fmt.Errorf("%d of %d accepted", len(accepted), events)
			}
			return nil
		})
		seqMu.Lock()
		defer seqMu.Unlock()
		want := make([]int, events)
		for i := range want {
			want[i] = i
		}
		if !slices.Equal(accepted, want) {
			t.Errorf("accepted in the order %v, want %v", accepted, want)
		}
		if !slices.IsSorted(attempts) {
			t.Errorf("attempts in the order %v: an event overtook one still being retried", attempts)
		}
		t.Logf("%d attempts for %d events", len(attempts), events)
	})

	t.Run("TLS: private CA and client certificates, rotated without restart", s.testTLS)
	t.Run("credentials reach the endpoint and nowhere else", s.testCredentials)
	t.Run("endpoint validation handshake", s.testValidation)
	t.Run("replay of dead letters", s.testReplay)
}

// gaps lists the times between consecutive requests.
func gaps(got []delivery) string {
	var out []string
	for i := 1; i < len(got); i++ {
		out = append(out, got[i].At.Sub(got[i-1].At).Round(10*time.Millisecond).String())
	}
	return strings.Join(out, " ")
}

// tlsServer is an HTTPS receiver with a certificate from ca; with clients
// set it requires a client certificate from that pool and records the
// subjects it saw.
func tlsServer(t *testing.T, ca *testCA, clients *x509.CertPool) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var subjects []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			mu.Lock()
			subjects = append(subjects, r.TLS.PeerCertificates[0].Subject.CommonName)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.tlsCert(t, "receiver", true)}}
	if clients != nil {
		srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, clients
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), subjects...)
	}
}

func (s *safety) testTLS(t *testing.T) {
	ctx, c := s.ctx, s.c
	serverCA, clientCA := newCA(t, "private server CA"), newCA(t, "client CA")
	// A CA bundle from a ConfigMap lets a private certificate through.
	private, _ := tlsServer(t, serverCA, nil)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "private-ca", Namespace: s.ns}, Data: map[string]string{"ca.crt": string(serverCA.pem)}}
	if err := c.admin.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	sub := s.subscribe(t, "private-ca", private.URL+"/", []string{"tls.private"}, func(sub *hooklinev1.WebhookSubscription) {
		sub.Spec.Delivery.Retry.MaxAttempts = 100
	})
	s.accepted(t, sub)
	s.send(t, map[string]any{"type": "tls.private", "data": 1})
	waitFor(t, 30*time.Second, func() error {
		if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
			return err
		}
		if f := sub.Status.Delivery; f == nil || f.LastFailure == nil || f.LastFailure.Class != "TLSError" {
			return fmt.Errorf("delivery status %+v, want a TLSError", f)
		}
		return nil
	})
	if msg := sub.Status.Delivery.LastFailure.Message; !strings.Contains(msg, "unknown authority") {
		t.Errorf("failure without the CA: %q, want it to name the unknown authority", msg)
	}
	update(ctx, t, c, sub, func() {
		sub.Spec.TLS = &hooklinev1.TLSSpec{CA: &hooklinev1.CASource{ConfigMapKeyRef: &hooklinev1.SecretKeyReference{Name: "private-ca", Key: "ca.crt"}}}
	})
	waitFor(t, 30*time.Second, func() error {
		if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
			return err
		}
		if d := sub.Status.Delivery; d == nil || d.Delivered != 1 {
			return fmt.Errorf("delivery status %+v, want the held event delivered once the CA is trusted", d)
		}
		return nil
	})

	// mTLS: the client certificate from a kubernetes.io/tls Secret, and a
	// rotated one used without a restart.
	mtls, subjects := tlsServer(t, serverCA, clientCA.pool())
	certPEM, keyPEM := clientCA.issue(t, "hookline-client-1", false)
	caSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "server-ca", Namespace: s.ns}, Data: map[string][]byte{"bundle.pem": serverCA.pem}}
	clientSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "client-cert", Namespace: s.ns}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}}
	for _, o := range []client.Object{caSecret, clientSecret} {
		if err := c.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	msub := s.subscribe(t, "mtls", mtls.URL+"/", []string{"tls.mutual"}, func(sub *hooklinev1.WebhookSubscription) {
		sub.Spec.TLS = &hooklinev1.TLSSpec{
			CA:                         &hooklinev1.CASource{SecretKeyRef: &hooklinev1.SecretKeyReference{Name: "server-ca", Key: "bundle.pem"}},
			ClientCertificateSecretRef: &hooklinev1.LocalObjectReference{Name: "client-cert"},
		}
	})
	s.accepted(t, msub)
	s.send(t, map[string]any{"type": "tls.mutual", "data": 1})
	waitFor(t, 30*time.Second, func() error {
		if got := subjects(); !slices.Equal(got, []string{"hookline-client-1"}) {
			return fmt.Errorf("client certificates seen: %v", got)
		}
		return nil
	})
	certPEM, keyPEM = clientCA.issue(t, "hookline-client-2", false)
	update(ctx, t, c, clientSecret, func() {
		clientSecret.Data = map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}
	})
	// The dispatcher picks the change up from its watch; events sent from
	// then on present the new certificate.
	waitFor(t, 30*time.Second, func() error {
		s.send(t, map[string]any{"type": "tls.mutual", "data": 2})
		time.Sleep(500 * time.Millisecond)
		if got := subjects(); got[len(got)-1] != "hookline-client-2" {
			return fmt.Errorf("client certificates seen: %v", got)
		}
		return nil
	})
}

func (s *safety) testCredentials(t *testing.T) {
	ctx, c := s.ctx, s.c
	const (
		password     = "correct-horse-battery-staple"
		clientSecret = "oauth-client-secret-9f8e7d"
		headerSecret = "api-key-5a4b3c2d1e"
	)
	// The token endpoint counts grants; each token is new.
	var mu sync.Mutex
	var grants int
	var tokens []string
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil || !ok || id != "hookline" || secret != clientSecret ||
			r.Form.Get("grant_type") != "client_credentials" || r.Form.Get("scope") != "webhooks:write" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		mu.Lock()
		grants++
		tok := fmt.Sprintf("access-token-%d-%d", grants, rand.IntN(1e9))
		tokens = append(tokens, tok)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, tok)
	}))
	t.Cleanup(tokenSrv.Close)
	// The receiver refuses the first token once, as after a key rollover
	// on its side.
	refused := false
	var seen []string
	rcv := newWrappedReceiver(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, r.Header.Get("Authorization")+" | "+r.Header.Get("X-Api-Key"))
			if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") && !refused {
				refused = true
				// Echoing what it got, as careless receivers do.
				http.Error(w, "token "+r.Header.Get("Authorization")+" rejected", http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	})
	for _, sec := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "basic", Namespace: s.ns}, Type: corev1.SecretTypeBasicAuth,
			Data: map[string][]byte{corev1.BasicAuthUsernameKey: []byte("hookline"), corev1.BasicAuthPasswordKey: []byte(password)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "oauth", Namespace: s.ns}, Data: map[string][]byte{"client-secret": []byte(clientSecret)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "api-key", Namespace: s.ns}, Data: map[string][]byte{"key": []byte(headerSecret)}},
	} {
		if err := c.admin.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	apiKey := hooklinev1.Header{Name: "X-Api-Key", ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "api-key", Key: "key"}}}
	basic := s.subscribe(t, "basic-auth", rcv.URL+"/basic", []string{"cred.basic"}, func(sub *hooklinev1.WebhookSubscription) {
		sub.Spec.Auth = &hooklinev1.EndpointAuth{Basic: &hooklinev1.BasicAuth{SecretRef: hooklinev1.LocalObjectReference{Name: "basic"}}}
		sub.Spec.Headers = []hooklinev1.Header{apiKey}
	})
	oauth := s.subscribe(t, "oauth2", rcv.URL+"/oauth", []string{"cred.oauth"}, func(sub *hooklinev1.WebhookSubscription) {
		sub.Spec.Auth = &hooklinev1.EndpointAuth{OAuth2: &hooklinev1.OAuth2ClientCredentials{
			TokenURL: tokenSrv.URL + "/token", ClientID: "hookline", Scopes: []string{"webhooks:write"},
			ClientSecretRef: hooklinev1.SecretKeyReference{Name: "oauth", Key: "client-secret"},
		}}
	})
	s.accepted(t, basic)
	s.accepted(t, oauth)
	s.send(t, map[string]any{"type": "cred.basic", "data": 1})
	for i := range 3 {
		s.send(t, map[string]any{"type": "cred.oauth", "data": i})
	}
	waitFor(t, 30*time.Second, func() error {
		for _, sub := range []*hooklinev1.WebhookSubscription{basic, oauth} {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
				return err
			}
		}
		if basic.Status.Delivery == nil || basic.Status.Delivery.Delivered != 1 || oauth.Status.Delivery == nil || oauth.Status.Delivery.Delivered != 3 {
			return fmt.Errorf("delivered: basic %+v, oauth2 %+v", basic.Status.Delivery, oauth.Status.Delivery)
		}
		return nil
	})
	mu.Lock()
	wantBasic := "Basic " + base64.StdEncoding.EncodeToString([]byte("hookline:"+password)) + " | " + headerSecret
	if !slices.Contains(seen, wantBasic) {
		t.Errorf("requests carried %q, want one with basic auth and the header from the Secret", seen)
	}
	// One 401: the token is fetched again once, and the delivery retried
	// with it at once; later deliveries reuse it.
	if grants != 2 || len(tokens) != 2 {
		t.Errorf("%d token grants, want 2 (the first token refused once)", grants)
	}
	bearer := 0
	for _, h := range seen {
		if strings.HasPrefix(h, "Bearer ") {
			bearer++
		}
	}
	if bearer != 4 {
		t.Errorf("%d OAuth2 requests, want 4 (one refused, retried at once, two more): %q", bearer, seen)
	}
	secrets := append([]string{password, clientSecret, headerSecret}, tokens...)
	mu.Unlock()

	// No secret appears in the dispatcher's logs, in Events or in status.
	var events eventsv1.EventList
	if err := c.admin.List(ctx, &events, client.InNamespace(s.ns)); err != nil {
		t.Fatal(err)
	}
	var subs hooklinev1.WebhookSubscriptionList
	if err := c.admin.List(ctx, &subs, client.InNamespace(s.ns)); err != nil {
		t.Fatal(err)
	}
	eventsJSON, _ := json.Marshal(events)
	statusJSON, _ := json.Marshal(subs)
	for where, text := range map[string]string{"dispatcher logs": s.disp.logs.String(), "Events": string(eventsJSON), "subscriptions": string(statusJSON)} {
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s contain the secret %q", where, secret)
			}
		}
	}
}

func (s *safety) testValidation(t *testing.T) {
	ctx, c := s.ctx, s.c
	type answer struct {
		origin string // "" leaves WebHook-Allowed-Origin out; "echo" echoes the request's
		rate   string
	}
	validating := func(a answer) (*receiver, func() []http.Header) {
		var mu sync.Mutex
		var options []http.Header
		rcv := newWrappedReceiver(t, func(posts http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodOptions {
					posts.ServeHTTP(w, r)
					return
				}
				mu.Lock()
				options = append(options, r.Header.Clone())
				mu.Unlock()
				switch a.origin {
				case "echo":
					w.Header().Set("WebHook-Allowed-Origin", r.Header.Get("WebHook-Request-Origin"))
				case "":
				default:
					w.Header().Set("WebHook-Allowed-Origin", a.origin)
				}
				if a.rate != "" {
					w.Header().Set("WebHook-Allowed-Rate", a.rate)
				}
				w.WriteHeader(http.StatusOK)
			})
		})
		return rcv, func() []http.Header {
			mu.Lock()
			defer mu.Unlock()
			return append([]http.Header(nil), options...)
		}
	}
	validated := func(sub *hooklinev1.WebhookSubscription) {
		sub.Spec.EndpointValidation = hooklinev1.EndpointValidationCloudEvents
		sub.Spec.Delivery.RateLimit = &hooklinev1.RateLimit{RequestsPerSecond: 5}
	}

	okRcv, okOptions := validating(answer{origin: "echo", rate: "60"})
	ok := s.subscribe(t, "validated", okRcv.URL+"/", []string{"validated.*"}, validated)
	s.accepted(t, ok)
	waitFor(t, 30*time.Second, func() error {
		return condition(ctx, c, ok, hooklinev1.ConditionEndpointValidated, metav1.ConditionTrue)
	})
	opts := okOptions()
	if len(opts) == 0 || opts[0].Get("WebHook-Request-Origin") != "default-dispatcher."+operatorNamespace+".svc" || opts[0].Get("WebHook-Request-Rate") != "300" {
		t.Errorf("OPTIONS requests %v, want the dispatcher's origin and the requested rate of 300 a minute", opts)
	}
	if cond := conditionOf(ctx, t, c, ok, hooklinev1.ConditionEndpointValidated); cond.Reason != hooklinev1.ReasonValidationAccepted ||
		!strings.Contains(cond.Message, "60 requests a minute") {
		t.Errorf("EndpointValidated = %+v", cond)
	}
	// The allowed rate, one a second, holds instead of the subscription's
	// five.
	for i := range 4 {
		s.send(t, map[string]any{"type": "validated.tick", "data": i})
	}
	got := waitCount(t, okRcv, 4, 30*time.Second)
	if span := got[3].At.Sub(got[0].At); span < 2700*time.Millisecond {
		t.Errorf("4 deliveries within %s (%s), want at most one a second as the endpoint allows", span, gaps(got))
	}

	// A refusal holds the deliveries and says why.
	noRcv, _ := validating(answer{origin: "someone-else.example"})
	no := s.subscribe(t, "not-validated", noRcv.URL+"/", []string{"refused.*"}, validated)
	waitFor(t, 30*time.Second, func() error {
		return condition(ctx, c, no, hooklinev1.ConditionEndpointValidated, metav1.ConditionFalse)
	})
	if cond := conditionOf(ctx, t, c, no, hooklinev1.ConditionEndpointValidated); cond.Reason != hooklinev1.ReasonValidationRefused {
		t.Errorf("EndpointValidated = %+v, want ValidationRefused", cond)
	}
	s.send(t, map[string]any{"type": "refused.tick", "data": 1})
	waitFor(t, 30*time.Second, func() error {
		if err := c.admin.Get(ctx, client.ObjectKeyFromObject(no), no); err != nil {
			return err
		}
		if d := no.Status.Delivery; d == nil || d.Backlog != 1 {
			return fmt.Errorf("delivery status %+v, want the event held in the backlog", d)
		}
		return nil
	})
	if n := len(noRcv.deliveries()); n != 0 {
		t.Errorf("%d deliveries to an endpoint that refused the handshake", n)
	}
}

// replayCall asks the ingest API to replay a subscription's dead letters.
func replayCall(addr, token, ns, name string) (int, map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/namespaces/"+ns+"/subscriptions/"+name+":replay", strings.NewReader(`{}`))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

func (s *safety) testReplay(t *testing.T) {
	ctx, c := s.ctx, s.c
	var mu sync.Mutex
	failing := true
	rcv := newReceiver(t, func(w http.ResponseWriter, attempt int) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	setFailing := func(v bool) {
		mu.Lock()
		failing = v
		mu.Unlock()
	}
	sub := s.subscribe(t, "replayed", rcv.URL+"/", []string{"replay.*"}, func(sub *hooklinev1.WebhookSubscription) {
		sub.Spec.Delivery.Retry.MaxAttempts = 1
	})
	s.accepted(t, sub)
	// status.delivery.deadLettered counts every delivery given up on;
	// replaying does not lower it.
	deadLettered := func(n int64) {
		t.Helper()
		waitFor(t, 30*time.Second, func() error {
			if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
				return err
			}
			if d := sub.Status.Delivery; d == nil || d.DeadLettered != n {
				return fmt.Errorf("delivery status %+v, want %d dead-lettered", d, n)
			}
			return nil
		})
	}
	var ids []string
	for i := range 3 {
		ids = append(ids, s.send(t, map[string]any{"type": "replay.item", "data": i}))
	}
	deadLettered(3)
	setFailing(false)

	// Only whoever may update the subscription may replay it.
	if code, body, err := replayCall(s.disp.ingest, s.token, s.ns, "replayed"); err != nil || code != http.StatusForbidden {
		t.Errorf("replay by a producer: %d %v %v, want 403", code, body, err)
	}
	operator := s.c.roleToken(ctx, t, s.ns, "replayer", rbacv1.PolicyRule{
		APIGroups: []string{hooklinev1.GroupVersion.Group}, Resources: []string{"webhooksubscriptions"}, Verbs: []string{"update"}, ResourceNames: []string{"replayed"}})
	code, body, err := replayCall(s.disp.ingest, operator, s.ns, "replayed")
	if err != nil || code != http.StatusOK || body["replayed"] != float64(3) {
		t.Fatalf("replay by an operator: %d %v %v, want 200 with 3 replayed", code, body, err)
	}
	waitFor(t, 30*time.Second, func() error {
		for _, id := range ids {
			if rcv.ids()[id] != 2 {
				return fmt.Errorf("requests by webhook-id %v, want each of %v twice", rcv.ids(), ids)
			}
		}
		return nil
	})

	// The annotation replays once per new value.
	setFailing(true)
	more := []string{s.send(t, map[string]any{"type": "replay.item", "data": 10}), s.send(t, map[string]any{"type": "replay.item", "data": 11})}
	deadLettered(5)
	setFailing(false)
	update(ctx, t, c, sub, func() {
		sub.Annotations = map[string]string{hooklinev1.AnnotationReplay: "2026-11-29T20:00:00Z"}
	})
	waitFor(t, 30*time.Second, func() error {
		if err := c.admin.Get(ctx, client.ObjectKeyFromObject(sub), sub); err != nil {
			return err
		}
		r := sub.Status.Delivery.LastReplay
		if r == nil || r.Request != "2026-11-29T20:00:00Z" || r.Replayed != 2 {
			return fmt.Errorf("lastReplay %+v, want the annotation's value with 2 replayed", r)
		}
		return nil
	})
	waitFor(t, 30*time.Second, func() error {
		for _, id := range more {
			if rcv.ids()[id] != 2 {
				return fmt.Errorf("requests by webhook-id %v, want each of %v twice", rcv.ids(), more)
			}
		}
		return hasEvent(ctx, c, sub, hooklinev1.ReasonReplayed)
	})
}

// roleToken returns a token, with the audience hookline, of a new
// ServiceAccount granted rule in ns.
func (c *cluster) roleToken(ctx context.Context, t *testing.T, ns, name string, rule rbacv1.PolicyRule) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: []rbacv1.PolicyRule{rule}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}}}
	for _, o := range []client.Object{sa, role, binding} {
		if err := c.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := c.kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"hookline"}, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}
