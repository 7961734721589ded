package dispatcher

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"sync"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/egress"
)

// egressConfig is the WebhookDispatcher's egress policy as the delivery
// client applies it: every connection is checked when it is dialled, and
// the proxy (if any) is used for every request. It follows changes to the
// dispatcher's spec without a restart.
type egressConfig struct {
	mu     sync.RWMutex
	spec   *hooklinev1.EgressPolicy
	policy *egress.Policy
	proxy  *url.URL
	err    error
}

// Timeouts of a dial: the attempt's deadline usually ends it first.
const (
	egressDialTimeout = 10 * time.Second
	egressKeepAlive   = 30 * time.Second
)

// update applies the dispatcher's egress spec, when it changed, and returns
// the policy with any error the spec has (the previous policy stays in
// force then).
func (e *egressConfig) update(spec hooklinev1.EgressPolicy) (*egress.Policy, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.spec != nil && reflect.DeepEqual(*e.spec, spec) {
		return e.policy, e.err
	}
	e.spec = spec.DeepCopy()
	policy, err := egress.NewPolicy(spec.AllowedCIDRs, spec.DeniedCIDRs)
	if err != nil {
		e.err = fmt.Errorf("spec.egress: %w", err)
		return e.policy, e.err
	}
	var proxy *url.URL
	if spec.ProxyURL != "" {
		if proxy, err = url.Parse(spec.ProxyURL); err != nil || proxy.Host == "" {
			// The error would quote the URL, which may hold credentials.
			e.err = fmt.Errorf("spec.egress.proxyURL: not an absolute URL")
			return e.policy, e.err
		}
	}
	e.policy, e.proxy, e.err = policy, proxy, nil
	return e.policy, nil
}

func (e *egressConfig) current() (*egress.Policy, *url.URL) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.policy, e.proxy
}

// dial is the delivery client's DialContext: the egress guard on the
// address actually dialled. Before the dispatcher's spec is read, the
// default policy applies.
func (e *egressConfig) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	policy, _ := e.current()
	d := egress.Dialer{Policy: policy, Timeout: egressDialTimeout, KeepAlive: egressKeepAlive}
	return d.DialContext(ctx, network, addr)
}

// proxyFor is the delivery client's Proxy.
func (e *egressConfig) proxyFor(*http.Request) (*url.URL, error) {
	_, proxy := e.current()
	return proxy, nil
}
