package rules

import (
	"fmt"
	"regexp"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/endpoint"
	"github.com/hookline/hookline/internal/eventtype"
	"github.com/hookline/hookline/internal/filter"
)

// MaxSecretHeaders is how many headers may take their value from a Secret.
// It keeps the Secrets a subscription names within what the admission
// policy can authorize: every authorization check has a fixed CEL cost, and
// the policy's budget allows about two dozen.
const MaxSecretHeaders = 8

// The words of the reference rules; the CRD's rules say the same.
const (
	MsgObjectName     = "must be a valid object name: at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	MsgNamespaceName  = "must be a valid namespace name: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
	MsgDispatcherName = "must be a valid WebhookDispatcher name: at most 41 lower-case letters, digits and '-', starting with a letter and ending with a letter or digit"
)

var (
	objectNameRegexp     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	namespaceNameRegexp  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dispatcherNameRegexp = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
)

// ValidObjectName says whether name can name a Secret, a ConfigMap or a
// WebhookSecret (an RFC 1123 subdomain).
func ValidObjectName(name string) bool {
	return len(name) <= 253 && objectNameRegexp.MatchString(name)
}

// ValidNamespaceName says whether name can name a namespace (an RFC 1123
// label).
func ValidNamespaceName(name string) bool {
	return len(name) <= 63 && namespaceNameRegexp.MatchString(name)
}

// ValidDispatcherName says whether name can name a WebhookDispatcher, whose
// name also names its Service and pods.
func ValidDispatcherName(name string) bool {
	return len(name) <= 41 && dispatcherNameRegexp.MatchString(name)
}

// ValidateSpec checks every rule of a subscription's spec that needs no
// other object, except the filter (ValidateFilter compiles it, and the
// dispatcher keeps the compiled form). Plain http is left to the
// dispatcher's policy (CheckDispatcher). The errors name the full path of
// each field and never quote a header value.
func ValidateSpec(spec *hooklinev1.WebhookSubscriptionSpec) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec")
	if err := endpoint.ValidateURL(spec.URL, true); err != nil {
		errs = append(errs, field.Invalid(p.Child("url"), field.OmitValueType{}, err.Error()))
	}
	if len(spec.EventTypes) == 0 {
		errs = append(errs, field.Required(p.Child("eventTypes"), "at least one event type pattern is required"))
	}
	for i, t := range spec.EventTypes {
		if err := eventtype.ValidatePattern(t); err != nil {
			errs = append(errs, field.Invalid(p.Child("eventTypes").Index(i), t, err.Error()))
		}
	}
	if ref := spec.DispatcherRef; ref != nil {
		dp := p.Child("dispatcherRef")
		if !ValidDispatcherName(ref.Name) {
			errs = append(errs, field.Invalid(dp.Child("name"), ref.Name, MsgDispatcherName))
		}
		if ref.Namespace != "" && !ValidNamespaceName(ref.Namespace) {
			errs = append(errs, field.Invalid(dp.Child("namespace"), ref.Namespace, MsgNamespaceName))
		}
	}
	sp := p.Child("signing", "secretRef")
	if !ValidObjectName(spec.Signing.SecretRef.Name) {
		errs = append(errs, field.Invalid(sp.Child("name"), spec.Signing.SecretRef.Name, MsgObjectName))
	}
	if spec.Signing.SecretRef.Namespace != "" {
		errs = append(errs, field.Forbidden(sp.Child("namespace"), "must not be set: a subscription only uses secrets in its own namespace"))
	}
	errs = append(errs, validateHeaders(p.Child("headers"), spec.Headers)...)
	if tls := spec.TLS; tls != nil {
		tp := p.Child("tls")
		if ca := tls.CA; ca != nil && (ca.SecretKeyRef != nil) == (ca.ConfigMapKeyRef != nil) {
			errs = append(errs, field.Invalid(tp.Child("ca"), field.OmitValueType{}, "set exactly one of secretKeyRef and configMapKeyRef"))
		}
	}
	if a := spec.Auth; a != nil {
		ap := p.Child("auth")
		if (a.Basic != nil) == (a.OAuth2 != nil) {
			errs = append(errs, field.Invalid(ap, field.OmitValueType{}, "set exactly one of basic and oauth2"))
		}
		if o := a.OAuth2; o != nil {
			if err := endpoint.ValidateURL(o.TokenURL, true); err != nil {
				errs = append(errs, field.Invalid(ap.Child("oauth2", "tokenURL"), field.OmitValueType{}, err.Error()))
			}
		}
	}
	for _, r := range References(spec) {
		if !ValidObjectName(r.Name) {
			errs = append(errs, field.Invalid(field.NewPath(r.Field).Child("name"), r.Name, MsgObjectName))
		}
	}
	errs = append(errs, validateDelivery(p.Child("delivery"), &spec.Delivery)...)
	return errs
}

func validateHeaders(p *field.Path, headers []hooklinev1.Header) field.ErrorList {
	var errs field.ErrorList
	fromSecrets := 0
	for i, h := range headers {
		hp := p.Index(i)
		if h.ValueFrom != nil {
			fromSecrets++
		}
		if (h.Value != nil) == (h.ValueFrom != nil) {
			errs = append(errs, field.Invalid(hp, field.OmitValueType{}, "set exactly one of value and valueFrom"))
		}
		if err := ValidateHeaderName(h.Name); err != nil {
			errs = append(errs, field.Invalid(hp.Child("name"), h.Name, err.Error()))
		}
		if h.Value != nil {
			if err := ValidateHeaderValue(*h.Value); err != nil {
				errs = append(errs, field.Invalid(hp.Child("value"), field.OmitValueType{}, err.Error()))
			}
		}
	}
	if fromSecrets > MaxSecretHeaders {
		errs = append(errs, field.Invalid(p, field.OmitValueType{}, fmt.Sprintf("at most %d headers may take their value from a Secret", MaxSecretHeaders)))
	}
	return errs
}

func validateDelivery(p *field.Path, d *hooklinev1.DeliveryPolicy) field.ErrorList {
	var errs field.ErrorList
	for _, b := range []struct {
		path     *field.Path
		value    *metav1.Duration
		min, max time.Duration
	}{
		{p.Child("timeout"), d.Timeout, time.Second, 5 * time.Minute},
		{p.Child("retry", "maxAge"), d.Retry.MaxAge, time.Minute, 720 * time.Hour},
		{p.Child("retry", "initialBackoff"), d.Retry.InitialBackoff, 100 * time.Millisecond, time.Hour},
		{p.Child("retry", "maxBackoff"), d.Retry.MaxBackoff, time.Second, 24 * time.Hour},
		{p.Child("suspendAfter"), d.SuspendAfter, time.Minute, 720 * time.Hour},
	} {
		if b.value != nil && (b.value.Duration < b.min || b.value.Duration > b.max) {
			errs = append(errs, field.Invalid(b.path, b.value.Duration.String(), "must be between "+Bound(b.min)+" and "+Bound(b.max)))
		}
	}
	if d.Retry.InitialBackoff != nil && d.Retry.MaxBackoff != nil && d.Retry.InitialBackoff.Duration > d.Retry.MaxBackoff.Duration {
		errs = append(errs, field.Invalid(p.Child("retry"), field.OmitValueType{}, "initialBackoff must not exceed maxBackoff"))
	}
	if d.Concurrency < 0 || d.Concurrency > 1000 {
		errs = append(errs, field.Invalid(p.Child("concurrency"), d.Concurrency, "must be between 1 and 1000"))
	}
	if d.Retry.MaxAttempts < 0 || d.Retry.MaxAttempts > 100 {
		errs = append(errs, field.Invalid(p.Child("retry", "maxAttempts"), d.Retry.MaxAttempts, "must be between 1 and 100"))
	}
	return errs
}

// Bound prints a bound as the schema's messages do: 5m, not 5m0s.
func Bound(d time.Duration) string {
	s := d.String()
	if len(s) > 3 && s[len(s)-3:] == "m0s" {
		s = s[:len(s)-2]
	}
	if len(s) > 3 && s[len(s)-3:] == "h0m" {
		s = s[:len(s)-2]
	}
	return s
}

// ValidateFilter compiles a non-empty filter expression: the compiled
// filter, or the error naming spec.filter, with the line and column CEL
// reports.
func ValidateFilter(expr string) (*filter.Filter, *field.Error) {
	f, err := filter.Compile(expr)
	if err != nil {
		return nil, field.Invalid(field.NewPath("spec", "filter"), field.OmitValueType{}, err.Error())
	}
	return f, nil
}

// SpecRefusal is the refusal for the first of errs (from ValidateSpec), or
// nil when there is none: InvalidSpec, Stalled.
func SpecRefusal(errs field.ErrorList) *Refusal {
	if len(errs) == 0 {
		return nil
	}
	return &Refusal{Field: errs[0].Field, Reason: hooklinev1.ReasonInvalidSpec, Message: errs[0].Error()}
}

// FilterRefusal is the refusal for a filter that does not compile:
// FilterInvalid, Stalled.
func FilterRefusal(err *field.Error) *Refusal {
	return &Refusal{Field: err.Field, Reason: hooklinev1.ReasonFilterInvalid, Message: err.Error()}
}

// CheckSpec is the first refusal of the spec's own rules, the filter
// included, or nil.
func CheckSpec(spec *hooklinev1.WebhookSubscriptionSpec) *Refusal {
	if r := SpecRefusal(ValidateSpec(spec)); r != nil {
		return r
	}
	if spec.Filter != "" {
		if _, err := ValidateFilter(spec.Filter); err != nil {
			return FilterRefusal(err)
		}
	}
	return nil
}
