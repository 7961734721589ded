package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"time"
)

// DefaultMaxIdleConnsPerHost is the idle connection pool size per endpoint
// host when ClientOptions leaves it zero.
const DefaultMaxIdleConnsPerHost = 64

// ClientOptions configures NewClient.
type ClientOptions struct {
	// RootCAs verifies endpoint certificates; nil means the system roots.
	// ParseCABundle builds one that adds private CAs to the system roots.
	RootCAs *x509.CertPool
	// ClientCertificate is presented when an endpoint asks for one (mutual
	// TLS); nil presents none. ParseClientCertificate builds it. There is
	// deliberately no option to skip verification of the endpoint.
	ClientCertificate *tls.Certificate
	// MaxIdleConnsPerHost bounds the idle connections kept per host;
	// zero means DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// DialContext opens connections; it is where the egress guard checks
	// the address actually dialled. It should return an error wrapping
	// ErrEgressDenied for a refused address. Nil means a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Proxy chooses a proxy per request. Nil means no proxy: the process
	// environment (HTTP_PROXY and friends) is deliberately not consulted,
	// so that egress is only what the dispatcher is configured for.
	Proxy func(*http.Request) (*url.URL, error)
}

// Transport limits. The per-attempt deadline comes from the request
// context, so these only stop single phases from hogging a connection.
const (
	dialTimeout           = 10 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	idleConnTimeout       = 90 * time.Second
	maxResponseHeaderSize = 1 << 20
)

// NewClient builds an HTTP client for deliveries: TLS 1.2 or newer,
// redirects never followed (the 3xx response is returned as is), keep-alive
// connection reuse, and no client-wide timeout, since each attempt carries
// its own deadline in its context. Clients builds one per TLS identity.
func NewClient(opts ClientOptions) *http.Client {
	dial := opts.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	perHost := opts.MaxIdleConnsPerHost
	if perHost <= 0 {
		perHost = DefaultMaxIdleConnsPerHost
	}
	tlsConfig := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    opts.RootCAs,
	}
	if opts.ClientCertificate != nil {
		tlsConfig.Certificates = []tls.Certificate{*opts.ClientCertificate}
	}
	transport := &http.Transport{
		Proxy:           opts.Proxy,
		DialContext:     dial,
		TLSClientConfig: tlsConfig,
		// A custom DialContext turns HTTP/2 off unless asked for.
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		IdleConnTimeout:        idleConnTimeout,
		MaxIdleConnsPerHost:    perHost,
		MaxResponseHeaderBytes: maxResponseHeaderSize,
		// The response body is only skimmed for an error snippet; without
		// this the transport would add Accept-Encoding to every request.
		DisableCompression: true,
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			// Following would send the signed event somewhere its
			// subscription never named.
			return http.ErrUseLastResponse
		},
	}
}
