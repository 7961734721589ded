package egress

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/hookline/hookline/internal/delivery"
)

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// minAddrTimeout is the least time given to one address when a name's
// addresses share the dial deadline, as net.Dialer does.
const minAddrTimeout = 2 * time.Second

// Dialer opens delivery connections, only to addresses its Policy allows.
// Its DialContext fits http.Transport (and delivery.ClientOptions). A
// Dialer is safe for concurrent use once its fields are set.
type Dialer struct {
	// Policy judges every address; nil means the default denials only.
	Policy *Policy
	// Resolver looks host names up; nil means net.DefaultResolver.
	Resolver Resolver
	// Timeout bounds one dial, across all of a name's addresses; zero
	// means only the context bounds it.
	Timeout time.Duration
	// KeepAlive is the TCP keep-alive period, as in net.Dialer: zero
	// means the system default, negative turns keep-alives off.
	KeepAlive time.Duration

	// dial connects to one vetted ip:port; nil means a net.Dialer that
	// checks the socket's address again. Tests replace it to see what
	// would be dialled.
	dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// DialContext connects to addr ("host:port") over tcp, tcp4 or tcp6. A host
// that is an IP address is judged as such (see CheckURL for the spellings
// refused outright). A name is resolved, and refused if ANY of its addresses
// is denied, before anything is dialled; otherwise its addresses are dialled
// in turn, by IP, until one answers. A refusal is a
// *delivery.EgressDeniedError naming the host and the rule. A name that
// does not resolve is an ordinary error.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ipNetwork, ok := ipNetworks[network]
	if !ok {
		// Anything but TCP over IP (a unix socket above all) would go
		// where no address check can follow.
		return nil, &delivery.EgressDeniedError{Addr: addr, Reason: fmt.Sprintf("network %q is not allowed, only tcp", network)}
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("split the address to dial: %w", err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("read the port to dial %q: not a port number", portText)
	}

	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}

	literal, err := d.Policy.checkHost(host, addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if literal.IsValid() {
		ips = []netip.Addr{literal.Unmap()}
	} else if ips, err = d.resolve(ctx, ipNetwork, host, addr); err != nil {
		return nil, err
	}
	ips = sameFamily(network, ips)
	if len(ips) == 0 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.AddrError{Err: "no address of the network's family", Addr: host}}
	}
	return d.dialInTurn(ctx, network, ips, uint16(port))
}

// ipNetworks maps the dialable networks to the lookup network of each.
var ipNetworks = map[string]string{"tcp": "ip", "tcp4": "ip4", "tcp6": "ip6"}

// resolve looks host up and judges every answer, refusing the name as soon
// as one is denied: a name that can lead somewhere forbidden is not to be
// trusted with the rest of its answers.
func (d *Dialer) resolve(ctx context.Context, ipNetwork, host, hostPort string) ([]netip.Addr, error) {
	var r Resolver = net.DefaultResolver
	if d.Resolver != nil {
		r = d.Resolver
	}
	answers, err := r.LookupNetIP(ctx, ipNetwork, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(answers) == 0 {
		return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	ips := make([]netip.Addr, 0, len(answers))
	for _, a := range answers {
		// Go's own resolver hands IPv4 answers back in IPv4-mapped form,
		// so an answer is judged, and dialled, as the address it reaches.
		a = a.Unmap()
		if why := d.Policy.reason(a); why != "" {
			return nil, &delivery.EgressDeniedError{Addr: hostPort, Reason: fmt.Sprintf("resolves to %s: %s", a, why)}
		}
		ips = append(ips, a)
	}
	return ips, nil
}

// sameFamily keeps the addresses a tcp4 or tcp6 dial can use.
func sameFamily(network string, ips []netip.Addr) []netip.Addr {
	if network == "tcp" {
		return ips
	}
	out := ips[:0:0]
	for _, ip := range ips {
		if ip.Is4() == (network == "tcp4") {
			out = append(out, ip)
		}
	}
	return out
}

// dialInTurn dials the addresses one after the other until one connects,
// giving each an equal share of what is left of the deadline, and returns
// the first error if none does.
func (d *Dialer) dialInTurn(ctx context.Context, network string, ips []netip.Addr, port uint16) (net.Conn, error) {
	dial := d.dialFunc()
	var first error
	for i, ip := range ips {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if left := len(ips) - i; left > 1 {
			if deadline, ok := ctx.Deadline(); ok {
				share := max(time.Until(deadline)/time.Duration(left), minAddrTimeout)
				actx, cancel = context.WithTimeout(ctx, share)
			}
		}
		conn, err := dial(actx, network, netip.AddrPortFrom(ip, port).String())
		cancel()
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

func (d *Dialer) dialFunc() func(ctx context.Context, network, address string) (net.Conn, error) {
	if d.dial != nil {
		return d.dial
	}
	nd := &net.Dialer{KeepAlive: d.KeepAlive, Control: d.control}
	return nd.DialContext
}

// control runs on the socket just before it connects, with the address it
// connects to: a second check in case anything between resolution and the
// socket changed the destination.
func (d *Dialer) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &delivery.EgressDeniedError{Addr: address, Reason: "socket address is not an IP address and port"}
	}
	if why := d.Policy.reason(ap.Addr().Unmap()); why != "" {
		return &delivery.EgressDeniedError{Addr: address, Reason: why}
	}
	return nil
}
