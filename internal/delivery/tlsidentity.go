package delivery

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sync"
)

// ParseCABundle returns the system roots plus every certificate of the PEM
// bundle, so that a private CA is trusted on top of the public ones. It
// fails if the bundle holds no certificate or a block that is not a valid
// one; the error never quotes the bundle.
func ParseCABundle(bundle []byte) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		// No system roots (a scratch image without a CA file): the bundle
		// alone is still worth trusting.
		pool = x509.NewCertPool()
	}
	found := 0
	rest := bundle
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("CA bundle block %d is %q, not a CERTIFICATE", n, truncate(block.Type, 32))
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse CA bundle certificate %d: %w", n, err)
		}
		pool.AddCert(cert)
		found++
	}
	if found == 0 {
		return nil, errors.New("CA bundle holds no PEM certificate")
	}
	return pool, nil
}

// ParseClientCertificate parses a client certificate chain and its private
// key, both PEM, as a kubernetes.io/tls Secret holds them (tls.crt and
// tls.key). Its errors never quote the key.
func ParseClientCertificate(certPEM, keyPEM []byte) (tls.Certificate, error) {
	switch {
	case len(bytes.TrimSpace(certPEM)) == 0:
		return tls.Certificate{}, errors.New("client certificate (tls.crt) is empty")
	case len(bytes.TrimSpace(keyPEM)) == 0:
		return tls.Certificate{}, errors.New("client certificate key (tls.key) is empty")
	}
	// crypto/tls's errors name PEM block types and what did not match,
	// never the bytes.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse client certificate and key: %w", err)
	}
	return cert, nil
}

// TLSIdentity is the TLS material of a target: what it trusts besides the
// system roots and what it presents. The zero TLSIdentity means the
// Clients' base options alone.
type TLSIdentity struct {
	// CABundle is PEM certificates to trust on top of the system roots;
	// empty means the base options' RootCAs.
	CABundle []byte
	// ClientCertificate and ClientKey are PEM, as in a kubernetes.io/tls
	// Secret (tls.crt, tls.key), presented for mutual TLS. Both empty
	// means the base options' ClientCertificate.
	ClientCertificate []byte
	ClientKey         []byte
}

// identityKey is a digest of an identity's material, so that no PEM (and
// no key) is kept as a map key that could end up printed.
type identityKey [sha256.Size]byte

func (id TLSIdentity) key() identityKey {
	h := sha256.New()
	for _, part := range [][]byte{id.CABundle, id.ClientCertificate, id.ClientKey} {
		// Length-prefixed, so that material cannot slide from one field
		// to the next and keep the digest.
		_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
		h.Write(part)
	}
	var k identityKey
	h.Sum(k[:0])
	return k
}

func (id TLSIdentity) options(base ClientOptions) (ClientOptions, error) {
	opts := base
	if len(id.CABundle) > 0 {
		pool, err := ParseCABundle(id.CABundle)
		if err != nil {
			return ClientOptions{}, err
		}
		opts.RootCAs = pool
	}
	if len(id.ClientCertificate) > 0 || len(id.ClientKey) > 0 {
		cert, err := ParseClientCertificate(id.ClientCertificate, id.ClientKey)
		if err != nil {
			return ClientOptions{}, err
		}
		opts.ClientCertificate = &cert
	}
	return opts, nil
}

// Clients keeps one HTTP client per TLS identity, built by NewClient from
// a base (dialler, proxy, pool size) plus the identity's material, so that
// every delivery with the same identity reuses the same connections.
// Changed material is a new identity, hence a new client: that is how a
// rotated certificate or CA bundle takes effect without a restart. Retain
// drops the clients no longer needed. It is safe for concurrent use.
type Clients struct {
	base ClientOptions

	mu      sync.Mutex
	clients map[identityKey]*http.Client
}

// NewClients returns an empty cache building clients from base.
func NewClients(base ClientOptions) *Clients {
	return &Clients{base: base, clients: make(map[identityKey]*http.Client)}
}

// Get returns the client for id, building it on first use. It fails if
// id's material does not parse; nothing is cached then.
func (c *Clients) Get(id TLSIdentity) (*http.Client, error) {
	k := id.key()
	c.mu.Lock()
	defer c.mu.Unlock()
	if client, ok := c.clients[k]; ok {
		return client, nil
	}
	opts, err := id.options(c.base)
	if err != nil {
		return nil, err
	}
	client := NewClient(opts)
	c.clients[k] = client
	return client, nil
}

// Retain keeps the clients of the identities in keep and drops the others,
// closing their idle connections. A request still in flight on a dropped
// client finishes; its connection is then closed once idle for the
// transport's idle timeout.
func (c *Clients) Retain(keep ...TLSIdentity) {
	wanted := make(map[identityKey]bool, len(keep))
	for _, id := range keep {
		wanted[id.key()] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, client := range c.clients {
		if !wanted[k] {
			client.CloseIdleConnections()
			delete(c.clients, k)
		}
	}
}

// Len is how many clients are cached.
func (c *Clients) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.clients)
}
