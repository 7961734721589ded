// Package egress decides which network addresses webhook deliveries may
// connect to, and enforces it where it cannot be dodged: when the connection
// is dialled.
//
// A Policy denies, by default, every address that is not ordinary public
// unicast: loopback, unspecified, link-local (with the cloud metadata
// endpoints), private (RFC 1918), CGNAT, unique-local, site-local,
// multicast, broadcast, reserved, documentation and benchmarking ranges, and
// every IPv6 form that embeds an IPv4 address (IPv4-mapped,
// IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo). A dispatcher may
// allow ranges (in-cluster receivers) and deny more; its denials win.
//
// Dialer is the http.Transport DialContext that applies a Policy. It
// resolves names itself, refuses a name if any of its addresses is denied,
// and then dials the vetted address rather than the name, so a resolver
// that answers differently the second time (DNS rebinding) gains nothing.
// The socket's peer address is checked once more just before connecting.
// CheckURL is the early check for configuration time; it cannot replace the
// dial-time one, since names may resolve anywhere later.
//
// When deliveries go through an HTTP proxy, the transport dials the proxy,
// not the endpoint: the Dialer then checks the proxy's address, like any
// other, and it will usually have to be listed in the allowed ranges. Where
// the proxy connects onwards is beyond this package; the proxy must enforce
// its own egress rules.
package egress
