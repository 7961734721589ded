package delivery

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testOrigin = "hookline.example.com"

// grantingEndpoint answers OPTIONS with the given headers and status
// (200 when zero).
func grantingEndpoint(status int, header http.Header) *recorder {
	return &recorder{respond: func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		if status != 0 {
			w.WriteHeader(status)
		}
	}}
}

func TestHandshakeRequest(t *testing.T) {
	rec := grantingEndpoint(0, http.Header{"Webhook-Allowed-Origin": {testOrigin}, "Webhook-Allowed-Rate": {"120"}})
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Handshake(context.Background(), Target{
		URL:    srv.URL + "/hooks?tenant=7",
		Header: http.Header{"X-Tenant": {"acme"}, "webhook-request-origin": {"forged.example"}},
		Auth:   BasicAuth{Username: "webhooks", Password: testPassword},
	}, testOrigin, 120)
	if diff := cmp.Diff(HandshakeResult{Allowed: true, Rate: 120, StatusCode: 200}, res); diff != "" {
		t.Fatalf("Handshake (-want +got):\n%s", diff)
	}
	got := rec.only(t)
	if got.Method != http.MethodOptions || got.RequestURI != "/hooks?tenant=7" || len(got.Body) != 0 {
		t.Fatalf("request = %s %s with %d body bytes, want OPTIONS /hooks?tenant=7 without a body", got.Method, got.RequestURI, len(got.Body))
	}
	want := http.Header{
		"Webhook-Request-Origin": {testOrigin},
		"Webhook-Request-Rate":   {"120"},
		"X-Tenant":               {"acme"},
		"Authorization":          {"Basic " + base64.StdEncoding.EncodeToString([]byte("webhooks:"+testPassword))},
		"User-Agent":             {DefaultUserAgent()},
	}
	if diff := cmp.Diff(want, got.Header); diff != "" {
		t.Fatalf("request headers (-want +got):\n%s", diff)
	}
}

func TestHandshakeWithoutRequestedRate(t *testing.T) {
	rec := grantingEndpoint(http.StatusNoContent, http.Header{"Webhook-Allowed-Origin": {"*"}})
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{})}
	res := s.Handshake(context.Background(), Target{URL: srv.URL}, testOrigin, 0)
	if diff := cmp.Diff(HandshakeResult{Allowed: true, StatusCode: 204}, res); diff != "" {
		t.Fatalf("Handshake (-want +got):\n%s", diff)
	}
	if h := rec.only(t).Header; h.Get("Webhook-Request-Origin") != testOrigin || h.Values("Webhook-Request-Rate") != nil {
		t.Fatalf("request headers = %v, want the origin and no rate", h)
	}
}

func TestHandshakeAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		header http.Header
		body   string
		want   HandshakeResult
	}{
		{
			name:   "exact origin, rate",
			header: http.Header{"Webhook-Allowed-Origin": {testOrigin}, "Webhook-Allowed-Rate": {"120"}},
			want:   HandshakeResult{Allowed: true, Rate: 120, StatusCode: 200},
		},
		{
			name:   "origin in another case",
			header: http.Header{"Webhook-Allowed-Origin": {"HookLine.Example.com"}},
			want:   HandshakeResult{Allowed: true, StatusCode: 200},
		},
		{
			name:   "any origin, no rate limit",
			header: http.Header{"Webhook-Allowed-Origin": {"*"}, "Webhook-Allowed-Rate": {"*"}},
			want:   HandshakeResult{Allowed: true, Rate: -1, StatusCode: 200},
		},
		{
			name:   "garbage rate",
			status: 201,
			header: http.Header{"Webhook-Allowed-Origin": {testOrigin}, "Webhook-Allowed-Rate": {"fast"}},
			want:   HandshakeResult{Allowed: true, StatusCode: 201, Message: `ignored an invalid WebHook-Allowed-Rate: not a positive integer or "*"`},
		},
		{
			name:   "wrong origin",
			header: http.Header{"Webhook-Allowed-Origin": {"other.example"}, "Webhook-Allowed-Rate": {"120"}},
			want:   HandshakeResult{StatusCode: 200, Message: `the endpoint granted deliveries to origin "other.example", not "hookline.example.com"`},
		},
		{
			name: "origin missing",
			body: "hello",
			want: HandshakeResult{StatusCode: 200, Message: "the endpoint did not grant deliveries: no WebHook-Allowed-Origin in its answer"},
		},
		{
			name:   "OPTIONS not supported",
			status: http.StatusMethodNotAllowed,
			header: http.Header{"Allow": {"POST"}},
			want:   HandshakeResult{StatusCode: 405, Class: ClassHTTPStatus, Message: "HTTP 405: the endpoint does not support the validation handshake (OPTIONS)"},
		},
		{
			name:   "granting headers on a failure status",
			status: http.StatusForbidden,
			header: http.Header{"Webhook-Allowed-Origin": {"*"}},
			body:   "not you",
			want:   HandshakeResult{StatusCode: 403, Class: ClassHTTPStatus, Message: "HTTP 403: not you"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{respond: func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				if tc.status != 0 {
					w.WriteHeader(tc.status)
				}
				_, _ = w.Write([]byte(tc.body))
			}}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			s := &Sender{Client: NewClient(ClientOptions{})}
			res := s.Handshake(context.Background(), Target{URL: srv.URL}, testOrigin, 120)
			if diff := cmp.Diff(tc.want, res); diff != "" {
				t.Fatalf("Handshake (-want +got):\n%s", diff)
			}
			if got := rec.only(t); got.Method != http.MethodOptions {
				t.Fatalf("method = %s, want OPTIONS", got.Method)
			}
		})
	}
}

func TestHandshakeRedirectNotFollowed(t *testing.T) {
	elsewhere := grantingEndpoint(0, http.Header{"Webhook-Allowed-Origin": {"*"}})
	other := httptest.NewServer(elsewhere)
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL, http.StatusFound)
	}))
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{})}
	res := s.Handshake(context.Background(), Target{URL: srv.URL}, testOrigin, 0)
	want := HandshakeResult{StatusCode: 302, Class: ClassRedirect, Message: "HTTP 302: redirect not followed"}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Fatalf("Handshake (-want +got):\n%s", diff)
	}
	if n := len(elsewhere.all()); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

func TestHandshakeUsesTheTargetsClientAndCredentials(t *testing.T) {
	ts := newTokenServer(t, 3600)
	rec := &recorder{}
	srv := quietServer(httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.ServeHTTP(w, r)
		if r.Header.Get("Authorization") != "Bearer "+ts.token(1) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("WebHook-Allowed-Origin", r.Header.Get("WebHook-Request-Origin"))
	})))
	defer srv.Close()
	clients := NewClients(ClientOptions{})
	s := &Sender{Client: NewClient(ClientOptions{})}

	// The Sender's client does not trust the endpoint; the target's does.
	untrusted := s.Handshake(context.Background(), Target{URL: srv.URL}, testOrigin, 0)
	if diff := cmp.Diff(HandshakeResult{Class: ClassTLS, Message: "TLS: certificate signed by unknown authority"}, untrusted); diff != "" {
		t.Fatalf("Handshake with the Sender's client (-want +got):\n%s", diff)
	}
	client, err := clients.Get(TLSIdentity{CABundle: certPEMOf(srv)})
	if err != nil {
		t.Fatal(err)
	}
	target := Target{URL: srv.URL, Client: client, Auth: NewOAuth2(ts.config(fakeTimer()), nil)}
	if diff := cmp.Diff(HandshakeResult{Allowed: true, StatusCode: 200}, s.Handshake(context.Background(), target, testOrigin, 0)); diff != "" {
		t.Fatalf("Handshake with the target's client (-want +got):\n%s", diff)
	}
	if got := rec.only(t).Header.Get("Authorization"); got != "Bearer "+ts.token(1) {
		t.Fatalf("Authorization = %q", got)
	}
}

func TestHandshakeInvalidInput(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{})}
	for _, tc := range []struct {
		name   string
		target Target
		origin string
		want   string
	}{
		{"bad URL", Target{URL: "ftp://example.com/?token=qs-s3cret"}, testOrigin, "URL scheme must be http or https"},
		{"empty origin", Target{URL: srv.URL}, "", "the origin is empty or not a valid header value"},
		{"origin with a line break", Target{URL: srv.URL}, "a.example\r\nX-Injected: 1", "the origin is empty or not a valid header value"},
		{"bad static header", Target{URL: srv.URL, Header: http.Header{"X-Key": {"qs-s3cret\n"}}}, testOrigin, "header X-Key has an invalid value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.Handshake(context.Background(), tc.target, tc.origin, 0)
			if diff := cmp.Diff(HandshakeResult{Class: ClassInvalidRequest, Message: tc.want}, res); diff != "" {
				t.Fatalf("Handshake (-want +got):\n%s", diff)
			}
		})
	}
	if n := len(rec.all()); n != 0 {
		t.Fatalf("endpoint got %d requests", n)
	}
}

func TestParseAllowedRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		rate int
		ok   bool
	}{
		{"", 0, true},
		{"120", 120, true},
		{" 60 ", 60, true},
		{"1", 1, true},
		{"*", -1, true},
		{"0", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"fast", 0, false},
		{"**", 0, false},
		{"99999999999999999999999", 0, false},
	} {
		if rate, ok := parseAllowedRate(tc.in); rate != tc.rate || ok != tc.ok {
			t.Errorf("parseAllowedRate(%q) = %d, %v; want %d, %v", tc.in, rate, ok, tc.rate, tc.ok)
		}
	}
}

func FuzzParseAllowedRate(f *testing.F) {
	for _, seed := range []string{"120", "*", "", "0", "-1", "99999999999999999999", " 7 "} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rate, ok := parseAllowedRate(in)
		switch {
		case rate < -1:
			t.Fatalf("parseAllowedRate(%q) = %d", in, rate)
		case !ok && rate != 0:
			t.Fatalf("parseAllowedRate(%q) = %d but not ok", in, rate)
		case rate == -1 && strings.TrimSpace(in) != "*":
			t.Fatalf("parseAllowedRate(%q) = no limit", in)
		case rate == 0 && ok && strings.TrimSpace(in) != "":
			t.Fatalf("parseAllowedRate(%q) = 0, ok", in)
		}
	})
}
