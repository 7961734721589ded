package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookline/hookline/internal/keys"
)

// subjectRecorder answers 200 and records the common name of the client
// certificate of each request ("" for none).
type subjectRecorder struct {
	mu    sync.Mutex
	names []string
}

func (s *subjectRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		name = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	s.mu.Lock()
	s.names = append(s.names, name)
	s.mu.Unlock()
}

func (s *subjectRecorder) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

// mtlsServer starts an HTTPS server whose certificate serverCA issued and
// that requires a client certificate issued by clientCA.
func mtlsServer(t *testing.T, h http.Handler, serverCA, clientCA testCA) *httptest.Server {
	t.Helper()
	certPEM, keyPEM := serverCA.issue(t, serverLeaf())
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(clientCA.cert)
	return tlsServer(t, h, certPEM, keyPEM, func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = clientCAs
	})
}

func sendWith(t *testing.T, client *http.Client, url string) Result {
	t.Helper()
	s := &Sender{Clock: fakeClock()}
	return s.Send(context.Background(), Target{URL: url, Keys: []keys.Key{newKey(t, keys.HMACSHA256)}, Client: client}, orderCreated)
}

func TestSendSelfSignedNeedsItsCABundle(t *testing.T) {
	rec := &recorder{}
	srv := quietServer(httptest.NewTLSServer(rec))
	defer srv.Close()
	clients := NewClients(ClientOptions{})

	plain, err := clients.Get(TLSIdentity{})
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Class: ClassTLS, Message: "TLS: certificate signed by unknown authority"}
	if diff := cmp.Diff(want, sendWith(t, plain, srv.URL)); diff != "" {
		t.Fatalf("Send without the CA (-want +got):\n%s", diff)
	}
	if n := len(rec.all()); n != 0 {
		t.Fatalf("receiver got %d requests over an unverified connection", n)
	}

	trusting, err := clients.Get(TLSIdentity{CABundle: certPEMOf(srv)})
	if err != nil {
		t.Fatalf("Get with the server's certificate as CA bundle: %v", err)
	}
	if res := sendWith(t, trusting, srv.URL); !res.Success || res.StatusCode != 200 {
		t.Fatalf("Send with the CA = %+v, want success", res)
	}
	if got := rec.only(t); string(got.Body) != orderCreatedBody {
		t.Fatalf("receiver got body %s", got.Body)
	}
}

func TestSendMutualTLS(t *testing.T) {
	serverCA, clientCA, strangerCA := newCA(t, "server CA"), newCA(t, "client CA"), newCA(t, "stranger CA")
	rec := &subjectRecorder{}
	srv := mtlsServer(t, rec, serverCA, clientCA)
	clients := NewClients(ClientOptions{})
	certPEM, keyPEM := clientCA.issue(t, clientLeaf("hookline-dispatcher"))
	strangerCert, strangerKey := strangerCA.issue(t, clientLeaf("stranger"))
	expired := clientLeaf("expired")
	expired.notBefore, expired.notAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	expiredCert, expiredKey := clientCA.issue(t, expired)

	for _, tc := range []struct {
		name    string
		id      TLSIdentity
		want    Result
		subject string
	}{
		{
			name: "no client certificate",
			id:   TLSIdentity{CABundle: serverCA.pem},
			want: Result{Class: ClassTLS, Message: "TLS: the server requires a client certificate"},
		},
		{
			// The server names the CAs it accepts; a client does not offer
			// a certificate from another.
			name: "client certificate from a CA the server does not accept",
			id:   TLSIdentity{CABundle: serverCA.pem, ClientCertificate: strangerCert, ClientKey: strangerKey},
			want: Result{Class: ClassTLS, Message: "TLS: the server requires a client certificate from a CA it accepts, which the configured one is not"},
		},
		{
			name: "expired client certificate",
			id:   TLSIdentity{CABundle: serverCA.pem, ClientCertificate: expiredCert, ClientKey: expiredKey},
			want: Result{Class: ClassTLS, Message: "TLS: the server refused the client certificate (remote alert: expired certificate)"},
		},
		{
			name:    "client certificate the server trusts",
			id:      TLSIdentity{CABundle: serverCA.pem, ClientCertificate: certPEM, ClientKey: keyPEM},
			want:    Result{StatusCode: 200, Success: true},
			subject: "hookline-dispatcher",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := clients.Get(tc.id)
			if err != nil {
				t.Fatal(err)
			}
			before := len(rec.all())
			if diff := cmp.Diff(tc.want, sendWith(t, client, srv.URL)); diff != "" {
				t.Fatalf("Send (-want +got):\n%s", diff)
			}
			got := rec.all()[before:]
			if tc.subject == "" && len(got) != 0 {
				t.Fatalf("receiver got %d requests", len(got))
			}
			if tc.subject != "" && (len(got) != 1 || got[0] != tc.subject) {
				t.Fatalf("receiver saw client certificates %q, want [%s]", got, tc.subject)
			}
		})
	}
}

func TestSendCertificateProblems(t *testing.T) {
	ca := newCA(t, "receiver CA")
	clients := NewClients(ClientOptions{})
	client, err := clients.Get(TLSIdentity{CABundle: ca.pem})
	if err != nil {
		t.Fatal(err)
	}
	expired := serverLeaf()
	expired.notBefore, expired.notAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	early := serverLeaf()
	early.notBefore, early.notAfter = time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour)

	for _, tc := range []struct {
		name       string
		leaf       leaf
		wantPrefix string
	}{
		{"expired", expired, "TLS: certificate has expired or is not yet valid: current time "},
		{"not yet valid", early, "TLS: certificate has expired or is not yet valid: current time "},
		{"another host", serverLeaf(net.IPv4(10, 9, 8, 7)), "TLS: certificate is not valid for this host name: certificate is valid for 10.9.8.7, not 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			certPEM, keyPEM := ca.issue(t, tc.leaf)
			srv := tlsServer(t, rec, certPEM, keyPEM, nil)
			res := sendWith(t, client, srv.URL+"/in?token=qs-s3cret")
			if res.Class != ClassTLS || res.StatusCode != 0 || !strings.HasPrefix(res.Message, tc.wantPrefix) {
				t.Fatalf("Send = %+v, want a TLSError starting %q", res, tc.wantPrefix)
			}
			if strings.Contains(res.Message, "qs-s3cret") || strings.Contains(res.Message, "/in") {
				t.Fatalf("Message quotes the URL: %q", res.Message)
			}
			if n := len(rec.all()); n != 0 {
				t.Fatalf("receiver got %d requests", n)
			}
		})
	}
}

func TestClientsRotation(t *testing.T) {
	serverCA, clientCA := newCA(t, "server CA"), newCA(t, "client CA")
	rec := &subjectRecorder{}
	var closed atomic.Int32
	certPEM, keyPEM := serverCA.issue(t, serverLeaf())
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(clientCA.cert)
	srv := quietServer(httptest.NewUnstartedServer(rec))
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()

	clients := NewClients(ClientOptions{})
	oldCert, oldKey := clientCA.issue(t, clientLeaf("dispatcher-2026-04"))
	newCert, newKey := clientCA.issue(t, clientLeaf("dispatcher-2026-05"))
	oldID := TLSIdentity{CABundle: serverCA.pem, ClientCertificate: oldCert, ClientKey: oldKey}
	newID := TLSIdentity{CABundle: serverCA.pem, ClientCertificate: newCert, ClientKey: newKey}

	oldClient, err := clients.Get(oldID)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if res := sendWith(t, oldClient, srv.URL); !res.Success {
			t.Fatalf("Send with the old certificate = %+v", res)
		}
	}
	// The same material, in new slices, is the same identity.
	again, err := clients.Get(TLSIdentity{CABundle: bytes.Clone(serverCA.pem), ClientCertificate: bytes.Clone(oldCert), ClientKey: bytes.Clone(oldKey)})
	if err != nil || again != oldClient {
		t.Fatalf("Get with the same material gave another client (%v)", err)
	}

	// The Secret changed: the dispatcher recomputes the target.
	newClient, err := clients.Get(newID)
	if err != nil {
		t.Fatal(err)
	}
	if newClient == oldClient {
		t.Fatal("Get with a rotated certificate returned the old client")
	}
	if res := sendWith(t, newClient, srv.URL); !res.Success {
		t.Fatalf("Send with the new certificate = %+v", res)
	}
	if got, want := rec.all(), []string{"dispatcher-2026-04", "dispatcher-2026-04", "dispatcher-2026-05"}; !cmp.Equal(got, want) {
		t.Fatalf("receiver saw client certificates %q, want %q", got, want)
	}
	if n := clients.Len(); n != 2 {
		t.Fatalf("Len() = %d before Retain, want 2", n)
	}

	// Nothing uses the old identity any more: its idle connection closes.
	if n := closed.Load(); n != 0 {
		t.Fatalf("%d connections closed before Retain", n)
	}
	clients.Retain(newID)
	waitFor(t, "the old identity's idle connection to close", func() bool { return closed.Load() == 1 })
	if n := clients.Len(); n != 1 {
		t.Fatalf("Len() = %d after Retain, want 1", n)
	}
	if kept, err := clients.Get(newID); err != nil || kept != newClient {
		t.Fatalf("Get(new identity) after Retain gave another client (%v)", err)
	}
	if rebuilt, err := clients.Get(oldID); err != nil || rebuilt == oldClient {
		t.Fatalf("Get(old identity) after Retain returned the dropped client (%v)", err)
	}
}

func TestClientsBadMaterial(t *testing.T) {
	ca := newCA(t, "client CA")
	certPEM, keyPEM := ca.issue(t, clientLeaf("a"))
	_, otherKey := ca.issue(t, clientLeaf("b"))
	clients := NewClients(ClientOptions{})
	for _, tc := range []struct {
		name    string
		id      TLSIdentity
		wantErr string
	}{
		{"CA bundle without a certificate", TLSIdentity{CABundle: []byte("not PEM at all")}, "CA bundle holds no PEM certificate"},
		{"certificate without its key", TLSIdentity{ClientCertificate: certPEM}, "client certificate key (tls.key) is empty"},
		{"key without its certificate", TLSIdentity{ClientKey: keyPEM}, "client certificate (tls.crt) is empty"},
		{"key of another certificate", TLSIdentity{ClientCertificate: certPEM, ClientKey: otherKey}, "parse client certificate and key: tls: private key does not match public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := clients.Get(tc.id)
			if err == nil || err.Error() != tc.wantErr || client != nil {
				t.Fatalf("Get = %v, %v; want error %q", client, err, tc.wantErr)
			}
			if n := clients.Len(); n != 0 {
				t.Fatalf("a failed Get cached a client: Len() = %d", n)
			}
		})
	}
}

func TestClientsKeepBaseOptions(t *testing.T) {
	rec := &recorder{}
	srv := quietServer(httptest.NewTLSServer(rec))
	defer srv.Close()
	dialer := &redirectingDialer{to: strings.TrimPrefix(srv.URL, "https://")}
	clients := NewClients(ClientOptions{DialContext: dialer.DialContext, RootCAs: trusting(srv)})

	// The zero identity is the base: its RootCAs trust the server.
	base, err := clients.Get(TLSIdentity{})
	if err != nil {
		t.Fatal(err)
	}
	if res := sendWith(t, base, "https://127.0.0.1/in"); !res.Success {
		t.Fatalf("Send with the base identity = %+v", res)
	}
	// An identity with a CA bundle keeps the base's dialler.
	own, err := clients.Get(TLSIdentity{CABundle: certPEMOf(srv)})
	if err != nil {
		t.Fatal(err)
	}
	if res := sendWith(t, own, "https://127.0.0.1/in"); !res.Success {
		t.Fatalf("Send with a CA bundle identity = %+v", res)
	}
	if got := dialer.addrs(); !cmp.Equal(got, []string{"127.0.0.1:443", "127.0.0.1:443"}) {
		t.Fatalf("dialled %q, want the base dialler used by both clients", got)
	}
}

func TestParseCABundle(t *testing.T) {
	ca := newCA(t, "private CA")
	other := newCA(t, "other CA")
	_, keyPEM := ca.issue(t, clientLeaf("x"))
	leafPEM, _ := ca.issue(t, serverLeaf())
	system, err := x509.SystemCertPool()
	if err != nil {
		t.Fatalf("system roots: %v", err)
	}

	t.Run("system roots plus the bundle", func(t *testing.T) {
		pool, err := ParseCABundle(append(append([]byte("# private CAs\n"), ca.pem...), other.pem...))
		if err != nil {
			t.Fatal(err)
		}
		want := system.Clone()
		want.AddCert(ca.cert)
		want.AddCert(other.cert)
		if !pool.Equal(want) {
			t.Fatal("pool is not the system roots plus the bundle's two certificates")
		}
		if pool.Equal(system) {
			t.Fatal("pool is only the system roots")
		}
		leaf := parseCert(t, leafPEM)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
			t.Fatalf("a certificate issued by the bundle's CA does not verify: %v", err)
		}
	})

	corrupt := []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	for _, tc := range []struct {
		name    string
		bundle  []byte
		wantErr string
	}{
		{"empty", nil, "CA bundle holds no PEM certificate"},
		{"no PEM", []byte("just text"), "CA bundle holds no PEM certificate"},
		{"a private key", append(bytes.Clone(ca.pem), keyPEM...), `CA bundle block 2 is "PRIVATE KEY", not a CERTIFICATE`},
		{"a corrupt certificate", corrupt, "parse CA bundle certificate 1: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := ParseCABundle(tc.bundle)
			if err == nil || pool != nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("ParseCABundle = %v, %v; want error %q", pool, err, tc.wantErr)
			}
			assertNoPEM(t, err.Error(), tc.bundle)
		})
	}
}

func TestParseClientCertificate(t *testing.T) {
	ca := newCA(t, "client CA")
	certPEM, keyPEM := ca.issue(t, clientLeaf("hookline-dispatcher"))
	_, otherKey := ca.issue(t, clientLeaf("other"))

	cert, err := ParseClientCertificate(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf == nil || cert.Leaf.Subject.CommonName != "hookline-dispatcher" || cert.PrivateKey == nil {
		t.Fatalf("parsed certificate has leaf %v, key set %v", cert.Leaf, cert.PrivateKey != nil)
	}

	for _, tc := range []struct {
		name      string
		cert, key []byte
		wantErr   string
	}{
		{"empty certificate", nil, keyPEM, "client certificate (tls.crt) is empty"},
		{"empty key", certPEM, []byte(" \n"), "client certificate key (tls.key) is empty"},
		{"mismatched key", certPEM, otherKey, "parse client certificate and key: tls: private key does not match public key"},
		{"key and certificate swapped", keyPEM, certPEM, "parse client certificate and key: "},
		{"garbage key", certPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "parse client certificate and key: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseClientCertificate(tc.cert, tc.key)
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("ParseClientCertificate error = %v, want %q", err, tc.wantErr)
			}
			assertNoPEM(t, err.Error(), tc.key)
			assertNoPEM(t, err.Error(), keyPEM)
			assertNoPEM(t, err.Error(), otherKey)
		})
	}
}

// assertNoPEM fails if msg quotes any base64 line of pemBytes.
func assertNoPEM(t *testing.T, msg string, pemBytes []byte) {
	t.Helper()
	for line := range strings.Lines(string(pemBytes)) {
		line = strings.TrimSpace(line)
		if len(line) >= 8 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line) {
			t.Fatalf("error %q quotes PEM material", msg)
		}
	}
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestTLSFailureMessages(t *testing.T) {
	ca := newCA(t, "CA")
	leafPEM, _ := ca.issue(t, serverLeaf(net.IPv4(10, 0, 0, 1)))
	cert := parseCert(t, leafPEM)
	remote := func(alert string) error {
		return fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", &net.OpError{Op: "remote error", Err: errors.New("tls: " + alert)})
	}
	for _, tc := range []struct {
		name string
		err  error
		cert clientCert
		want string // "" means not a TLS error
	}{
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{Cert: cert}}, clientCertNone, "TLS: certificate signed by unknown authority"},
		{"expired", &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Cert: cert, Reason: x509.Expired, Detail: "current time X is after Y"}}, clientCertNone, "TLS: certificate has expired or is not yet valid: current time X is after Y"},
		{"other invalid", x509.CertificateInvalidError{Cert: cert, Reason: x509.NotAuthorizedToSign}, clientCertNone, "TLS: certificate is invalid: certificate is not authorized to sign other certificates"},
		{"host name", &tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: cert, Host: "10.0.0.2"}}, clientCertNone, "TLS: certificate is not valid for this host name: certificate is valid for 10.0.0.1, not 10.0.0.2"},
		{"other verification", &tls.CertificateVerificationError{Err: errors.New("x509: too many intermediates for path length constraint")}, clientCertNone, "TLS: certificate verification failed: too many intermediates for path length constraint"},
		{"certificate required", remote("certificate required"), clientCertNone, "TLS: the server requires a client certificate"},
		{"certificate required though one is configured", remote("certificate required"), clientCertPresented, "TLS: the server requires a client certificate from a CA it accepts, which the configured one is not"},
		{"bad certificate without one (TLS 1.2)", remote("bad certificate"), clientCertNone, "TLS: the server requires a client certificate (remote alert: bad certificate)"},
		{"bad certificate with one", remote("bad certificate"), clientCertPresented, "TLS: the server refused the client certificate (remote alert: bad certificate)"},
		{"expired client certificate", remote("expired certificate"), clientCertPresented, "TLS: the server refused the client certificate (remote alert: expired certificate)"},
		{"bad certificate, client unknown", remote("bad certificate"), clientCertUnknown, "TLS: the server refused the client certificate or requires one (remote alert: bad certificate)"},
		{"remote alert as text only", errors.New("read: remote error: tls: certificate required"), clientCertNone, "TLS: the server requires a client certificate"},
		{"other remote alert", remote("protocol version not supported"), clientCertNone, "TLS handshake failed: remote alert: protocol version not supported"},
		{"not TLS at all", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, clientCertNone, "TLS handshake failed: the server does not speak TLS"},
		{"plain HTTP answer", http.ErrSchemeMismatch, clientCertNone, "TLS handshake failed: the server answered in plain HTTP"},
		{"local alert", tls.AlertError(70), clientCertNone, "TLS handshake failed: protocol version not supported"},
		{"other TLS text", errors.New("tls: server selected unsupported protocol version 302"), clientCertNone, "TLS handshake failed: tls: server selected unsupported protocol version 302"},
		{"connection refused", &net.OpError{Op: "dial", Err: errors.New("connect: connection refused")}, clientCertNone, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tlsFailure(tc.err, tc.cert)
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("tlsFailure = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}
