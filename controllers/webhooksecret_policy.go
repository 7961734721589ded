package controllers

import (
	"fmt"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/keys"
)

// Bounds of the rotation policy. The CRD refuses values outside them at
// admission; the controller checks them again for API servers that do not
// evaluate the CRD's validation rules.
const (
	minRotationInterval = time.Hour
	maxRotationInterval = 8760 * time.Hour
	maxRotationOverlap  = 720 * time.Hour
	// defaultRotationOverlap applies when spec.rotation or its overlap is
	// unset: manual rotations keep the previous key for as long as
	// automatic ones do.
	defaultRotationOverlap = 24 * time.Hour
)

// rotationPolicy is a WebhookSecret's spec with its defaults resolved.
type rotationPolicy struct {
	algorithm keys.Algorithm
	// interval between automatic rotations; zero rotates on request only.
	interval time.Duration
	// overlap is how long the previous key stays after a rotation.
	overlap time.Duration
}

// policyFor resolves the defaults of spec and checks the rules admission
// normally enforces. An error means the spec cannot work until edited.
func policyFor(spec hooklinev1.WebhookSecretSpec) (rotationPolicy, error) {
	p := rotationPolicy{algorithm: keys.HMACSHA256, overlap: defaultRotationOverlap}
	switch spec.Algorithm {
	case "", hooklinev1.AlgorithmHMACSHA256:
	case hooklinev1.AlgorithmEd25519:
		p.algorithm = keys.Ed25519
	default:
		return rotationPolicy{}, fmt.Errorf("spec.algorithm %q is not supported: use %s or %s",
			spec.Algorithm, hooklinev1.AlgorithmHMACSHA256, hooklinev1.AlgorithmEd25519)
	}
	if r := spec.Rotation; r != nil {
		if r.Interval != nil {
			p.interval = r.Interval.Duration
			if p.interval < minRotationInterval || p.interval > maxRotationInterval {
				return rotationPolicy{}, fmt.Errorf("spec.rotation.interval %s must be between %s and %s",
					p.interval, minRotationInterval, maxRotationInterval)
			}
		}
		if r.Overlap != nil {
			p.overlap = r.Overlap.Duration
			if p.overlap < 0 || p.overlap > maxRotationOverlap {
				return rotationPolicy{}, fmt.Errorf("spec.rotation.overlap %s must be between 0s and %s",
					p.overlap, maxRotationOverlap)
			}
		}
		// The CRD's rule on spec.rotation, with the overlap's default.
		if p.interval > 0 && p.overlap >= p.interval {
			return rotationPolicy{}, fmt.Errorf("spec.rotation.overlap %s must be shorter than spec.rotation.interval %s (the overlap defaults to %s)",
				p.overlap, p.interval, defaultRotationOverlap)
		}
	}
	return p, nil
}

// keyState is what the Secret holds. The Secret, not the WebhookSecret's
// status, is the source of truth, so a lost status never causes a rotation.
type keyState struct {
	// current signs now; the zero Key when the Secret holds no usable key.
	current          keys.Key
	currentCreatedAt time.Time
	// damaged says the Secret holds a current key that does not parse.
	damaged bool
	// wrongType is the Secret's type when it is not
	// hooklinev1.SigningKeySecretType (someone recreated the Secret with
	// another one). A type cannot change, so such a Secret is replaced.
	wrongType string

	// previous still signs until previousExpiresAt; the zero Key if none.
	previous          keys.Key
	previousCreatedAt time.Time
	// previousExpiresAt is zero when the Secret did not record it.
	previousExpiresAt time.Time

	// lastRotateRequest is the last value of the rotate annotation that
	// was acted upon.
	lastRotateRequest string
}

// rotateReason says why a new key is generated.
type rotateReason int

const (
	rotateNone rotateReason = iota
	// rotateSecretType: the Secret has another type and is replaced.
	rotateSecretType
	// rotateCreate: the Secret holds no key yet.
	rotateCreate
	// rotateDamaged: the Secret's current key does not parse.
	rotateDamaged
	// rotateAlgorithm: the current key is not of spec.algorithm.
	rotateAlgorithm
	// rotateRequest: the rotate annotation has a value not acted upon yet.
	rotateRequest
	// rotateInterval: the current key is older than the rotation interval.
	rotateInterval
)

// decision is what must happen to the keys at a given time.
type decision struct {
	reason rotateReason
	// why explains the rotation in words, for events and logs.
	why string
	// expirePrevious: the previous key's overlap window has ended.
	expirePrevious bool
	// next is when the decision changes on its own if nothing else does:
	// the next automatic rotation or the previous key's expiry, whichever
	// comes first, for the keys as they are after this decision. Zero when
	// nothing is due.
	next time.Time
}

// rotate reports whether a new key must be generated.
func (d decision) rotate() bool { return d.reason != rotateNone }

// rotationDecision decides, at now, whether the Secret's keys must change.
// request is the current value of the rotate annotation: a non-empty value
// that differs from the last one acted upon triggers exactly one rotation,
// and creating the first key acts upon the value present at that time.
func rotationDecision(now time.Time, p rotationPolicy, s keyState, request string) decision {
	var d decision
	switch {
	case s.wrongType != "":
		d.reason, d.why = rotateSecretType, fmt.Sprintf("the Secret had type %q, and as a type cannot change the Secret was recreated with type %q",
			s.wrongType, hooklinev1.SigningKeySecretType)
	case s.damaged:
		d.reason, d.why = rotateDamaged, "the current key in the Secret could not be parsed"
	case s.current.IsZero():
		d.reason, d.why = rotateCreate, "the Secret holds no signing key"
	case s.current.Algorithm() != p.algorithm:
		d.reason, d.why = rotateAlgorithm, fmt.Sprintf("spec.algorithm changed from %s to %s", s.current.Algorithm(), p.algorithm)
	case request != "" && request != s.lastRotateRequest:
		d.reason, d.why = rotateRequest, fmt.Sprintf("requested with %s=%q", hooklinev1.RotateAnnotation, request)
	case p.interval > 0 && !now.Before(s.currentCreatedAt.Add(p.interval)):
		d.reason, d.why = rotateInterval, fmt.Sprintf("the rotation interval of %s has elapsed", p.interval)
	}
	if !s.previous.IsZero() && !now.Before(previousExpiry(p, s)) {
		d.expirePrevious = true
	}

	d.next = nextCheck(p, nextKeys(now, p, s, d, keys.Key{}, request))
	return d
}

// nextCheck is when keys held as in s next need attention: the next
// automatic rotation or the previous key's expiry, whichever comes first.
// Zero when nothing is due.
func nextCheck(p rotationPolicy, s keyState) time.Time {
	var next time.Time
	if p.interval > 0 && !s.currentCreatedAt.IsZero() {
		next = s.currentCreatedAt.Add(p.interval)
	}
	if !s.previous.IsZero() {
		next = earliest(next, s.previousExpiresAt)
	}
	return next
}

// previousExpiry is when the previous key leaves the Secret: the expiry
// recorded at rotation, brought forward if the overlap has been shortened
// since. A Secret that lost the record gets the expiry the overlap implies;
// with neither known (zero) the key is due at once.
func previousExpiry(p rotationPolicy, s keyState) time.Time {
	expiry := s.previousExpiresAt
	if !s.currentCreatedAt.IsZero() {
		expiry = earliest(expiry, s.currentCreatedAt.Add(p.overlap))
	}
	return expiry
}

// nextKeys returns the keys the Secret holds once d is carried out at now.
// newKey is the freshly generated key when d rotates. The old current key
// becomes the previous one for the overlap window (a key that does not
// parse cannot, and an older previous key is dropped); with no overlap it
// is dropped at once.
func nextKeys(now time.Time, p rotationPolicy, s keyState, d decision, newKey keys.Key, request string) keyState {
	out := s
	out.damaged, out.wrongType = false, ""
	if !out.previous.IsZero() {
		out.previousExpiresAt = previousExpiry(p, s)
	}
	if d.expirePrevious {
		out.previous, out.previousCreatedAt, out.previousExpiresAt = keys.Key{}, time.Time{}, time.Time{}
	}
	if !d.rotate() {
		return out
	}
	switch {
	case s.current.IsZero():
		// Nothing to retire: a key that does not parse cannot sign. A
		// previous key stays until its own expiry.
	case p.overlap > 0:
		out.previous, out.previousCreatedAt, out.previousExpiresAt = s.current, s.currentCreatedAt, now.Add(p.overlap)
	default:
		out.previous, out.previousCreatedAt, out.previousExpiresAt = keys.Key{}, time.Time{}, time.Time{}
	}
	out.current, out.currentCreatedAt = newKey, now
	if request != "" {
		out.lastRotateRequest = request
	}
	return out
}

// earliest returns the earlier of two times, ignoring zero ones.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	default:
		return b
	}
}
