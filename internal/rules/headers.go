package rules

import (
	"errors"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/net/http/httpguts"
)

// ReservedHeaderPrefix starts the names of the signature scheme's headers
// (webhook-id, webhook-timestamp, webhook-signature), which the sender sets.
const ReservedHeaderPrefix = "webhook-"

// ReservedHeaderNames are the headers, besides those starting with
// ReservedHeaderPrefix, that the sender sets itself or that describe the
// connection and the message framing, which the HTTP transport owns
// (HTTP/2 even refuses some of them). Lower case, as the CRD compares them.
//
// This one list is what the CRD's CEL rule on spec.headers refuses (a test
// checks the generated CRD against it), what the controller, the admission
// webhook and the dispatcher refuse, and what delivery drops.
var ReservedHeaderNames = []string{
	"connection",
	"content-length",
	"content-type",
	"host",
	"keep-alive",
	"proxy-connection",
	"te",
	"trailer",
	"transfer-encoding",
	"upgrade",
	"user-agent",
}

// IsReservedHeader says whether the sender owns the header name (in any
// case): a subscription may not set it, and delivery never copies it from a
// subscription.
func IsReservedHeader(name string) bool {
	n := strings.ToLower(name)
	return strings.HasPrefix(n, ReservedHeaderPrefix) || slices.Contains(ReservedHeaderNames, n)
}

// ReservedHeaderCEL is the CEL rule the CRD carries on each header: the
// name, lower-cased, is neither reserved nor prefixed. The marker on
// api/v1alpha1.Header must hold exactly this rule.
func ReservedHeaderCEL() string {
	quoted := make([]string, len(ReservedHeaderNames))
	for i, n := range ReservedHeaderNames {
		quoted[i] = "'" + n + "'"
	}
	return "!self.name.lowerAscii().startsWith('" + ReservedHeaderPrefix + "') && !(self.name.lowerAscii() in [" + strings.Join(quoted, ", ") + "])"
}

// The words of the header rules; the CRD's rules say the same.
const (
	MsgHeaderReserved  = "this header is set by Hookline and cannot be overridden"
	MsgHeaderName      = "must be an HTTP header name: letters, digits and !#$%&'*+-.^_`|~"
	MsgHeaderValueCtrl = "must not contain control characters such as CR, LF, tab or NUL"
)

// ValidateHeaderName reports why name cannot be the name of a header a
// subscription sets, or nil.
func ValidateHeaderName(name string) error {
	if !httpguts.ValidHeaderFieldName(name) {
		return errors.New(MsgHeaderName)
	}
	if IsReservedHeader(name) {
		return errors.New(MsgHeaderReserved)
	}
	return nil
}

// ValidateHeaderValue reports why v cannot be sent as a header value, or
// nil. HTTP allows no control characters in a value but tab; tab is refused
// too, with every other C0 and C1 control character, since a value that
// differs from what it looks like in a manifest is never intended. The error
// never quotes the value, which may be a credential.
func ValidateHeaderValue(v string) error {
	if !httpguts.ValidHeaderFieldValue(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return errors.New(MsgHeaderValueCtrl)
	}
	return nil
}
