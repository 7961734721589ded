package delivery

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/hookline/hookline/internal/keys"
)

const (
	testClientID     = "hookline-dispatcher"
	testClientSecret = "cl!ent s3cret/value"
	testPassword     = "pa55 w:rd-from-secret"
)

// tokenServer is a real OAuth2 token endpoint for the client credentials
// grant: it checks the client, the scopes and the audience, and issues
// tokens "at-1-...", "at-2-...", and so on.
type tokenServer struct {
	*httptest.Server
	expiresIn int
	// fail, when set, answers instead of issuing a token.
	fail func(w http.ResponseWriter, r *http.Request)

	mu     sync.Mutex
	forms  []url.Values
	issued []string
}

func newTokenServer(t *testing.T, expiresIn int) *tokenServer {
	ts := &tokenServer{expiresIn: expiresIn}
	ts.Server = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/token" {
		http.Error(w, "not here", http.StatusNotFound)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ts.mu.Lock()
	ts.forms = append(ts.forms, r.PostForm)
	n := len(ts.issued) + 1
	ts.mu.Unlock()
	if ts.fail != nil {
		ts.fail(w, r)
		return
	}
	// RFC 6749 section 2.3.1: form-encoded, then HTTP Basic.
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	w.Header().Set("Content-Type", "application/json")
	if id != testClientID || secret != testClientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("scope") != "events:write audit" ||
		r.PostForm.Get("audience") != "https://hooks.example" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_request"}`))
		return
	}
	token := fmt.Sprintf("at-%d-%s", n, strings.Repeat("x", 16))
	ts.mu.Lock()
	ts.issued = append(ts.issued, token)
	ts.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": token, "token_type": "bearer", "expires_in": ts.expiresIn})
}

// requests is how many token requests arrived.
func (ts *tokenServer) requests() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.forms)
}

func (ts *tokenServer) token(n int) string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.issued[n-1]
}

// number is the 1-based issue number of token, or 0 if it was not issued.
func (ts *tokenServer) number(token string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for i, issued := range ts.issued {
		if issued == token {
			return i + 1
		}
	}
	return 0
}

func (ts *tokenServer) config(clk *clocktesting.FakeClock) OAuth2Config {
	return OAuth2Config{
		TokenURL:       ts.URL + "/token",
		ClientID:       testClientID,
		ClientSecret:   testClientSecret,
		Scopes:         []string{"events:write", "audit"},
		EndpointParams: url.Values{"audience": {"https://hooks.example"}},
		Clock:          clk,
	}
}

func fakeTimer() *clocktesting.FakeClock { return clocktesting.NewFakeClock(sentAt) }

func authTarget(t *testing.T, url string, auth Authenticator) Target {
	return Target{URL: url, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}, Auth: auth}
}

func TestOAuth2TokenCachedThenRenewedBeforeExpiry(t *testing.T) {
	ts := newTokenServer(t, 3600)
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	clk := fakeTimer()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: clk}
	auth := NewOAuth2(ts.config(clk), s.Client)
	target := authTarget(t, srv.URL, auth)

	for i := range 5 {
		if res := s.Send(context.Background(), target, orderCreated); !res.Success {
			t.Fatalf("send %d: %+v", i, res)
		}
	}
	if n := ts.requests(); n != 1 {
		t.Fatalf("%d token requests for 5 sends, want 1", n)
	}
	form := ts.forms[0]
	if form.Get("grant_type") != "client_credentials" || form.Get("scope") != "events:write audit" || form.Get("audience") != "https://hooks.example" {
		t.Fatalf("token request form = %v", form)
	}

	// 30 s before expiry the token is still used; past that it is renewed.
	clk.SetTime(sentAt.Add(3600*time.Second - 31*time.Second))
	if res := s.Send(context.Background(), target, orderCreated); !res.Success {
		t.Fatalf("send before the margin: %+v", res)
	}
	if n := ts.requests(); n != 1 {
		t.Fatalf("%d token requests before the renewal margin, want 1", n)
	}
	clk.SetTime(sentAt.Add(3600*time.Second - 29*time.Second))
	if res := s.Send(context.Background(), target, orderCreated); !res.Success {
		t.Fatalf("send within the margin: %+v", res)
	}
	if n := ts.requests(); n != 2 {
		t.Fatalf("%d token requests within the renewal margin, want 2", n)
	}

	var got []string
	for _, c := range rec.all() {
		got = append(got, c.Header.Get("Authorization"))
	}
	first, second := "Bearer "+ts.token(1), "Bearer "+ts.token(2)
	want := []string{first, first, first, first, first, first, second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Authorization per delivery (-want +got):\n%s", diff)
	}
}

func TestOAuth2ConcurrentSendsFetchOneToken(t *testing.T) {
	ts := newTokenServer(t, 3600)
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	clk := fakeTimer()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: clk}
	target := authTarget(t, srv.URL, NewOAuth2(ts.config(clk), s.Client))

	var wg sync.WaitGroup
	results := make([]Result, 16)
	for i := range results {
		wg.Go(func() { results[i] = s.Send(context.Background(), target, orderCreated) })
	}
	wg.Wait()
	for i, res := range results {
		if !res.Success {
			t.Fatalf("send %d: %+v", i, res)
		}
	}
	if n := ts.requests(); n != 1 {
		t.Fatalf("%d token requests for 16 concurrent sends, want 1", n)
	}
}

func TestOAuth2RefreshAndRetryOnceAfter401(t *testing.T) {
	ts := newTokenServer(t, 3600)
	var (
		mu       sync.Mutex
		accepted = map[int]bool{} // by token number
	)
	rec := &recorder{respond: func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if accepted[ts.number(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))] {
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("token revoked"))
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	clk := fakeTimer()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: clk}
	target := authTarget(t, srv.URL, NewOAuth2(ts.config(clk), s.Client))

	t.Run("the renewed token is accepted", func(t *testing.T) {
		mu.Lock()
		accepted[2] = true // the first token is revoked before use
		mu.Unlock()
		if diff := cmp.Diff(Result{StatusCode: 200, Success: true}, s.Send(context.Background(), target, orderCreated)); diff != "" {
			t.Fatalf("Send (-want +got):\n%s", diff)
		}
		if n := ts.requests(); n != 2 {
			t.Fatalf("%d token requests, want 2 (one refresh)", n)
		}
		got := rec.all()
		if len(got) != 2 {
			t.Fatalf("endpoint got %d requests, want 2", len(got))
		}
		if got[0].Header.Get("Authorization") != "Bearer "+ts.token(1) || got[1].Header.Get("Authorization") != "Bearer "+ts.token(2) {
			t.Fatalf("Authorization = %q then %q", got[0].Header.Get("Authorization"), got[1].Header.Get("Authorization"))
		}
		for _, h := range []string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"} {
			if got[0].Header.Get(h) != got[1].Header.Get(h) || got[1].Header.Get(h) == "" {
				t.Fatalf("retry changed %s: %q then %q", h, got[0].Header.Get(h), got[1].Header.Get(h))
			}
		}
		if string(got[0].Body) != orderCreatedBody || string(got[1].Body) != orderCreatedBody {
			t.Fatalf("bodies %s then %s", got[0].Body, got[1].Body)
		}
	})

	t.Run("a second 401 is the result", func(t *testing.T) {
		mu.Lock()
		clear(accepted) // every token is refused now
		mu.Unlock()
		before, tokensBefore := len(rec.all()), ts.requests()
		want := Result{StatusCode: 401, Class: ClassHTTPStatus, Message: "HTTP 401: token revoked"}
		if diff := cmp.Diff(want, s.Send(context.Background(), target, orderCreated)); diff != "" {
			t.Fatalf("Send (-want +got):\n%s", diff)
		}
		if n := len(rec.all()) - before; n != 2 {
			t.Fatalf("endpoint got %d requests, want 2 (one retry)", n)
		}
		if n := ts.requests() - tokensBefore; n != 1 {
			t.Fatalf("%d token requests, want 1 (one refresh)", n)
		}
	})
}

func TestBasicAuth(t *testing.T) {
	rec := &recorder{respond: func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "webhooks" || pass != testPassword {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}

	res := s.Send(context.Background(), authTarget(t, srv.URL, BasicAuth{Username: "webhooks", Password: testPassword}), orderCreated)
	if diff := cmp.Diff(Result{StatusCode: 200, Success: true}, res); diff != "" {
		t.Fatalf("Send (-want +got):\n%s", diff)
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("webhooks:"+testPassword))
	if got := rec.only(t).Header.Get("Authorization"); got != want {
		t.Fatalf("Authorization = %q, want %q", got, want)
	}

	// A wrong password is not retried: asking again cannot help.
	res = s.Send(context.Background(), authTarget(t, srv.URL, &BasicAuth{Username: "webhooks", Password: "wrong"}), orderCreated)
	if diff := cmp.Diff(Result{StatusCode: 401, Class: ClassHTTPStatus, Message: "HTTP 401: Unauthorized"}, res); diff != "" {
		t.Fatalf("Send with a wrong password (-want +got):\n%s", diff)
	}
	if n := len(rec.all()); n != 2 {
		t.Fatalf("endpoint got %d requests in all, want 2", n)
	}

	res = s.Send(context.Background(), authTarget(t, srv.URL, BasicAuth{Username: "web:hooks", Password: testPassword}), orderCreated)
	if diff := cmp.Diff(Result{Class: ClassAuth, Message: "basic auth user name must not contain a colon"}, res); diff != "" {
		t.Fatalf("Send with a colon in the user name (-want +got):\n%s", diff)
	}
	if n := len(rec.all()); n != 2 {
		t.Fatalf("endpoint got %d requests in all, want 2", n)
	}
}

func TestOAuth2TokenEndpointFailures(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	closedAddr := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		return addr
	}()

	for _, tc := range []struct {
		name       string
		fail       func(w http.ResponseWriter, r *http.Request)
		secret     string
		tokenURL   string // "" means the token server's
		client     *http.Client
		want       Result
		wantPrefix string
	}{
		{
			name:   "wrong client secret",
			secret: "not-the-secret",
			want:   Result{Class: ClassAuth, Message: "fetching an OAuth2 token: token endpoint answered HTTP 401 (invalid_client)"},
		},
		{
			name: "endpoint down, echoing the secret",
			fail: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("<html>maintenance for " + testClientSecret + "</html>"))
			},
			want: Result{Class: ClassAuth, Message: "fetching an OAuth2 token: token endpoint answered HTTP 503"},
		},
		{
			name: "error code with the secret in its description",
			fail: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = fmt.Fprintf(w, `{"error":"invalid_scope","error_description":"scope refused for %s"}`, testClientSecret)
			},
			want: Result{Class: ClassAuth, Message: "fetching an OAuth2 token: token endpoint answered HTTP 400 (invalid_scope)"},
		},
		{
			name: "answer without a token",
			fail: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"token_type":"bearer"}`))
			},
			want: Result{Class: ClassAuth, Message: "fetching an OAuth2 token: oauth2: server response missing access_token"},
		},
		{
			name: "token endpoint redirects",
			fail: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Location", "http://elsewhere.example/token")
				w.WriteHeader(http.StatusFound)
			},
			want: Result{Class: ClassAuth, Message: "fetching an OAuth2 token: token endpoint answered HTTP 302"},
		},
		{
			name:     "connection refused, token URL with a secret query",
			tokenURL: "http://" + closedAddr + "/token?key=qs-s3cret",
			want:     Result{Class: ClassAuth, Message: "fetching an OAuth2 token: dial tcp " + closedAddr + ": connect: connection refused"},
		},
		{
			name: "egress to the token endpoint denied",
			client: NewClient(ClientOptions{DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
				return nil, &EgressDeniedError{Addr: addr, Reason: "loopback address"}
			}}),
			wantPrefix: "fetching an OAuth2 token: egress to 127.0.0.1:",
			want:       Result{Class: ClassEgressDenied},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServer(t, 3600)
			ts.fail = tc.fail
			cfg := ts.config(fakeTimer())
			if tc.secret != "" {
				cfg.ClientSecret = tc.secret
			}
			if tc.tokenURL != "" {
				cfg.TokenURL = tc.tokenURL
			}
			client := tc.client
			if client == nil {
				client = NewClient(ClientOptions{})
			}
			s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
			res := s.Send(context.Background(), authTarget(t, srv.URL, NewOAuth2(cfg, client)), orderCreated)
			if tc.wantPrefix != "" {
				if !strings.HasPrefix(res.Message, tc.wantPrefix) {
					t.Fatalf("Message = %q, want prefix %q", res.Message, tc.wantPrefix)
				}
				res.Message = ""
			}
			if diff := cmp.Diff(tc.want, res); diff != "" {
				t.Fatalf("Send (-want +got):\n%s", diff)
			}
			for _, secret := range []string{testClientSecret, "qs-s3cret"} {
				if strings.Contains(res.Message, secret) {
					t.Fatalf("Message leaks %q: %q", secret, res.Message)
				}
			}
			if d := (Policy{}).Decide(res, 1, sentAt, sentAt, seeded()); res.Class == ClassAuth && d.Action != Retry {
				t.Fatalf("Decide(AuthError) = %s, want Retry", d.Action)
			}
			if n := len(rec.all()); n != 0 {
				t.Fatalf("endpoint got %d requests without credentials", n)
			}
		})
	}
}

func TestOAuth2CanceledWhileFetching(t *testing.T) {
	ts := newTokenServer(t, 3600)
	ctx, cancel := context.WithCancel(context.Background())
	ts.fail = func(_ http.ResponseWriter, r *http.Request) {
		cancel()
		<-r.Context().Done()
	}
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(ctx, authTarget(t, "http://hooks.example/in", NewOAuth2(ts.config(fakeTimer()), nil)), orderCreated)
	if diff := cmp.Diff(Result{Class: ClassConnection, Message: "request canceled"}, res); diff != "" {
		t.Fatalf("Send (-want +got):\n%s", diff)
	}
}

func TestOAuth2TokenRequestUsesTheGivenClient(t *testing.T) {
	ts := newTokenServer(t, 3600)
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	// Only this client can reach the token endpoint: its name resolves
	// nowhere else.
	dialer := &redirectingDialer{to: strings.TrimPrefix(ts.URL, "http://")}
	cfg := ts.config(fakeTimer())
	cfg.TokenURL = "http://tokens.hooks.example/token"
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(context.Background(), authTarget(t, srv.URL, NewOAuth2(cfg, NewClient(ClientOptions{DialContext: dialer.DialContext}))), orderCreated)
	if !res.Success {
		t.Fatalf("Send = %+v", res)
	}
	if got := dialer.addrs(); !cmp.Equal(got, []string{"tokens.hooks.example:80"}) {
		t.Fatalf("token client dialled %q", got)
	}
	if got := rec.only(t).Header.Get("Authorization"); got != "Bearer "+ts.token(1) {
		t.Fatalf("Authorization = %q", got)
	}
}

func TestCredentialsNeverInMessages(t *testing.T) {
	ts := newTokenServer(t, 3600)
	// An endpoint that echoes everything back, decoded too.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, pass, _ := r.BasicAuth()
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		_, _ = fmt.Fprintf(w, "password=%s token=%s secret=%s basic=%s\n", pass, token, testClientSecret,
			base64.StdEncoding.EncodeToString([]byte("webhooks:"+testPassword)))
		_ = r.Header.Write(w)
	}))
	defer srv.Close()
	clk := fakeTimer()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: clk}
	oauth := NewOAuth2(ts.config(clk), s.Client)

	for _, tc := range []struct {
		name    string
		auth    Authenticator
		secrets func() []string
	}{
		{
			"basic",
			BasicAuth{Username: "webhooks", Password: testPassword},
			func() []string {
				return []string{testPassword, base64.StdEncoding.EncodeToString([]byte("webhooks:" + testPassword))}
			},
		},
		{
			"oauth2",
			oauth,
			func() []string { return []string{testClientSecret, ts.token(1)} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.Send(context.Background(), authTarget(t, srv.URL, tc.auth), orderCreated)
			if res.Class != ClassHTTPStatus || res.StatusCode != 500 || !strings.Contains(res.Message, "Authorization: [redacted]") {
				t.Fatalf("Send = %+v, want HTTP 500 with the echoed Authorization redacted", res)
			}
			for _, secret := range tc.secrets() {
				if strings.Contains(res.Message, secret) {
					t.Fatalf("Message leaks %q: %q", secret, res.Message)
				}
			}
		})
	}
}

func TestTokenMargin(t *testing.T) {
	for _, tc := range []struct {
		lifetime, want time.Duration
	}{
		{time.Hour, 30 * time.Second},
		{5 * time.Minute, 30 * time.Second},
		{time.Minute, 6 * time.Second},
		{time.Second, 100 * time.Millisecond},
		{0, 0},
		{-time.Minute, 0},
	} {
		if got := tokenMargin(tc.lifetime); got != tc.want {
			t.Errorf("tokenMargin(%s) = %s, want %s", tc.lifetime, got, tc.want)
		}
	}
}
