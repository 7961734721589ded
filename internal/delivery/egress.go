package delivery

import (
	"errors"
	"fmt"
)

// ErrEgressDenied is matched (errors.Is) by every error that reports a
// connection refused by the egress policy.
var ErrEgressDenied = errors.New("egress denied")

// EgressDeniedError is returned by an egress-guarding DialContext when the
// address it was about to dial is not allowed. Send classifies it as
// ClassEgressDenied, which is never retried.
type EgressDeniedError struct {
	// Addr is the address refused, as host:port.
	Addr string
	// Reason says which rule refused it, such as "loopback address".
	Reason string
}

// Error describes the refusal.
func (e *EgressDeniedError) Error() string {
	return fmt.Sprintf("egress to %s denied: %s", e.Addr, e.Reason)
}

// Is makes errors.Is(err, ErrEgressDenied) true.
func (e *EgressDeniedError) Is(target error) bool { return target == ErrEgressDenied }
