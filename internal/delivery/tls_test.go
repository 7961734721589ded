package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hookline/hookline/internal/keys"
)

func trusting(srv *httptest.Server) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return pool
}

func TestSendHTTPS(t *testing.T) {
	rec := &recorder{}
	srv := quietServer(httptest.NewTLSServer(rec))
	defer srv.Close()
	key := newKey(t, keys.HMACSHA256)
	s := &Sender{Client: NewClient(ClientOptions{RootCAs: trusting(srv)}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: srv.URL + "/in", Keys: []keys.Key{key}}, orderCreated)
	if !res.Success || res.StatusCode != 200 {
		t.Fatalf("Send result = %+v, want success", res)
	}
	got := rec.only(t)
	if string(got.Body) != orderCreatedBody || got.Header.Get("Webhook-Signature") != key.Sign(orderCreated.ID, sentAt.Unix(), got.Body) {
		t.Fatalf("receiver got body %s, signature %q", got.Body, got.Header.Get("Webhook-Signature"))
	}
}

func TestSendHTTP2(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewUnstartedServer(rec)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	key := newKey(t, keys.HMACSHA256)
	s := &Sender{Client: NewClient(ClientOptions{RootCAs: trusting(srv)}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{
		URL:    srv.URL,
		Keys:   []keys.Key{key},
		Header: http.Header{"Connection": {"keep-alive"}, "X-Tenant": {"a"}},
	}, orderCreated)
	if !res.Success {
		t.Fatalf("Send result = %+v, want success", res)
	}
	got := rec.only(t)
	if got.ProtoMajor != 2 {
		t.Fatalf("request used HTTP/%d, want HTTP/2", got.ProtoMajor)
	}
	if string(got.Body) != orderCreatedBody || got.Header.Get("X-Tenant") != "a" || got.Header.Get("Webhook-Id") != orderCreated.ID {
		t.Fatalf("receiver got body %s, headers %v", got.Body, got.Header)
	}
}

func TestSendHTTPSUntrustedCertificate(t *testing.T) {
	rec := &recorder{}
	srv := quietServer(httptest.NewTLSServer(rec))
	defer srv.Close()
	// System roots do not know the test server's self-made CA.
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
	if res.Class != ClassTLS || res.StatusCode != 0 || !strings.Contains(res.Message, "certificate") {
		t.Fatalf("Send result = %+v, want a TLSError about the certificate", res)
	}
	if n := len(rec.all()); n != 0 {
		t.Fatalf("receiver got %d requests over an unverified connection", n)
	}
}

func TestSendHTTPSWrongHostName(t *testing.T) {
	rec := &recorder{}
	srv := quietServer(httptest.NewTLSServer(rec))
	defer srv.Close()
	// The test certificate names example.com and 127.0.0.1, not localhost.
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	s := &Sender{Client: NewClient(ClientOptions{RootCAs: trusting(srv)}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: url, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
	if res.Class != ClassTLS {
		t.Fatalf("Send result = %+v, want a TLSError", res)
	}
	if n := len(rec.all()); n != 0 {
		t.Fatalf("receiver got %d requests", n)
	}
}

func TestSendRefusesTLS11(t *testing.T) {
	rec := &recorder{}
	srv := quietServer(httptest.NewUnstartedServer(rec))
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	srv.StartTLS()
	defer srv.Close()

	// Control: the server does speak TLS 1.1 to a client that allows it,
	// so the refusal below is about the version and nothing else.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL, "https://"), &tls.Config{
		RootCAs: trusting(srv), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
	})
	if err != nil {
		t.Fatalf("control TLS 1.1 handshake: %v", err)
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS11 {
		t.Fatalf("control handshake negotiated %s", tls.VersionName(v))
	}
	_ = conn.Close()

	s := &Sender{Client: NewClient(ClientOptions{RootCAs: trusting(srv)}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: srv.URL, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
	if res.Class != ClassTLS || res.StatusCode != 0 {
		t.Fatalf("Send result = %+v, want a TLSError", res)
	}
	if n := len(rec.all()); n != 0 {
		t.Fatalf("receiver got %d requests over TLS 1.1", n)
	}
}

func TestSendHTTPSToPlainServer(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := &Sender{Client: NewClient(ClientOptions{}), Clock: fakeClock()}
	res := s.Send(context.Background(), Target{URL: strings.Replace(srv.URL, "http://", "https://", 1), Keys: []keys.Key{newKey(t, keys.HMACSHA256)}}, orderCreated)
	if res.Class != ClassTLS {
		t.Fatalf("Send result = %+v, want a TLSError", res)
	}
}
