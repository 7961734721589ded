package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/eventtype"
	"github.com/hookline/hookline/internal/rules"
)

// desired computes how a subscription is served now. A subscription that
// cannot be served is still returned, not accepted, with the reason: its
// events are held in the queue until it can be.
func (s *subscriptions) desired(ctx context.Context, sub *hooklinev1.WebhookSubscription, goneGeneration int64, prev *deliveryState) *deliveryState {
	key := sub.Namespace + "/" + sub.Name
	spec := &sub.Spec
	st := &deliveryState{obj: sub, generation: sub.Generation, accepted: true, reason: hooklinev1.ReasonAccepted,
		msg: "Served by " + s.store.self + " instance " + s.instance, patternList: spec.EventTypes}
	st.target.URL = spec.URL
	st.target.Timeout = durationOr(spec.Delivery.Timeout, 15*time.Second)
	st.policy = delivery.Policy{
		MaxAttempts:    int(spec.Delivery.Retry.MaxAttempts),
		MaxAge:         durationOr(spec.Delivery.Retry.MaxAge, 0),
		InitialBackoff: durationOr(spec.Delivery.Retry.InitialBackoff, 0),
		MaxBackoff:     durationOr(spec.Delivery.Retry.MaxBackoff, 0),
	}
	st.suspendAfter = durationOr(spec.Delivery.SuspendAfter, defaultSuspendAfter)
	st.concurrency = int(spec.Delivery.Concurrency)
	if st.concurrency <= 0 {
		st.concurrency = 10
	}
	if spec.Delivery.Ordering == hooklinev1.OrderingOrdered {
		// One delivery in flight across every instance: the next event
		// waits until the previous one is acknowledged or dead-lettered.
		st.ordered, st.concurrency = true, 1
	}
	switch {
	case spec.Suspend:
		st.suspended, st.suspendMsg = hooklinev1.ReasonSuspendedBySpec, "Suspended by spec.suspend; events are held until it is cleared"
	case goneGeneration == sub.Generation:
		st.suspended, st.suspendMsg = hooklinev1.ReasonEndpointGone, goneMessage
	default:
		// Suspensions the status writer recorded for the current spec
		// outlive a restart and hold every instance.
		if c := heldByStatus(sub); c != nil {
			st.suspended, st.suspendMsg = c.Reason, c.Message
		}
	}
	refuse := func(reason, format string, args ...any) *deliveryState {
		st.accepted, st.reason, st.msg = false, reason, fmt.Sprintf(format, args...)
		return st
	}
	used := map[refKey]bool{}
	defer func() { s.refs.release(key, used) }()

	var err error
	if len(spec.EventTypes) == 0 {
		err = errors.New("at least one pattern is required")
	} else {
		st.patterns, err = eventtype.CompileSet(spec.EventTypes)
	}
	if err != nil {
		st.patternList = nil
		return refuse(hooklinev1.ReasonInvalidSpec, "spec.eventTypes: %v", err)
	}
	// The rules the controller and the admission webhook apply too.
	if r := rules.SpecRefusal(rules.ValidateSpec(spec)); r != nil {
		return refuse(r.Reason, "%s", r.Message)
	}
	d, err := s.store.dispatcher()
	if err != nil || d == nil {
		return refuse(hooklinev1.ReasonDispatcherNotFound, "Dispatcher %s is not readable by its own instance", s.store.self)
	}
	nsLabels := s.store.namespaceLabels(sub.Namespace)
	policy, err := s.egress.update(d.Spec.Egress)
	if err != nil {
		return refuse(hooklinev1.ReasonInvalidSpec, "Dispatcher %s %v", s.store.self, err)
	}
	admits, admitErr := d.AdmitsNamespace(sub.Namespace, nsLabels)
	if r := rules.CheckDispatcher(sub.Namespace, spec, rules.Dispatcher{Key: s.store.self, Admits: admits, AdmitErr: admitErr,
		AllowPlainHTTP: d.Spec.Egress.AllowPlainHTTP, CheckURL: policy.CheckURL}); r != nil {
		return refuse(r.Reason, "%s", r.Message)
	}
	if spec.Filter != "" {
		// Compiled once per generation: the subscription is synced again
		// on every status write, and a spec change makes a new generation.
		if prev != nil && prev.filter != nil && prev.generation == sub.Generation && prev.filter.String() == spec.Filter {
			st.filter = prev.filter
		} else if f, ferr := rules.ValidateFilter(spec.Filter); ferr != nil {
			r := rules.FilterRefusal(ferr)
			return refuse(r.Reason, "%s", r.Message)
		} else {
			st.filter = f
		}
	}
	ws, err := s.store.webhookSecret(sub.Namespace, spec.Signing.SecretRef.Name)
	if err != nil || ws == nil {
		return refuse(hooklinev1.ReasonSecretNotReady, "WebhookSecret %s not found", spec.Signing.SecretRef.Name)
	}
	secretKey := types.NamespacedName{Namespace: sub.Namespace, Name: ws.SigningSecretName()}
	used[refKey{kindSecret, secretKey}] = true
	secret := s.refs.secret(ctx, secretKey, key)
	if secret == nil {
		return refuse(hooklinev1.ReasonSecretNotReady, "Secret %s of WebhookSecret %s not found", secretKey.Name, ws.Name)
	}
	if st.target.Keys, err = signingKeys(secret, s.clock.Now()); err != nil {
		return refuse(hooklinev1.ReasonSecretNotReady, "WebhookSecret %s: %v", ws.Name, err)
	}

	r := refs{s: s, ctx: ctx, sub: sub, used: used, user: key}
	st.target.Header = http.Header{}
	for i, h := range spec.Headers {
		switch {
		case h.Value != nil:
			st.target.Header.Add(h.Name, *h.Value)
		case h.ValueFrom != nil:
			ref := h.ValueFrom.SecretKeyRef
			field := fmt.Sprintf("spec.headers[%d].valueFrom.secretKeyRef", i)
			v, bad := r.secretKey(field, ref.Name, ref.Key)
			if bad != nil {
				return refuse(bad.reason, "%s", bad.msg)
			}
			value := strings.TrimSpace(string(v))
			if err := rules.ValidateHeaderValue(value); err != nil {
				bad := rules.InvalidReferencedValue(rules.Reference{Kind: rules.KindSecret, Name: ref.Name, Field: field}, ref.Key, err)
				return refuse(bad.Reason, "%s", bad.Message)
			}
			st.target.Header.Add(h.Name, value)
		}
	}

	id, bad := r.tlsIdentity(spec.TLS)
	if bad != nil {
		return refuse(bad.reason, "%s", bad.msg)
	}
	client := s.sender.Client
	if len(id.CABundle) > 0 || len(id.ClientCertificate) > 0 {
		if client, err = s.clients.Get(id); err != nil {
			return refuse(hooklinev1.ReasonInvalidSpec, "spec.tls: %v", err)
		}
		st.target.Client, st.tlsIdentity = client, id
	}
	if st.target.Auth, st.authFingerprint, bad = r.authenticator(spec.Auth, client, prev); bad != nil {
		return refuse(bad.reason, "%s", bad.msg)
	}
	st.origin = s.origin(d)
	return st
}

// defaultSuspendAfter is spec.delivery.suspendAfter's default: as long as
// the longest-retrying hosted webhook services keep trying.
const defaultSuspendAfter = 5 * 24 * time.Hour

const goneMessage = "The endpoint answered 410 Gone; events are held until the subscription's spec changes or spec.suspend is set and cleared"

// heldByStatus returns the Suspended condition of the subscription's status,
// as the dispatcher last wrote it, when it holds the subscription for its
// current spec after a 410 or sustained failure; nil otherwise.
func heldByStatus(sub *hooklinev1.WebhookSubscription) *metav1.Condition {
	c := meta.FindStatusCondition(sub.Status.Conditions, hooklinev1.ConditionSuspended)
	if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != sub.Generation {
		return nil
	}
	if c.Reason != hooklinev1.ReasonEndpointGone && c.Reason != hooklinev1.ReasonSustainedFailure {
		return nil
	}
	return c
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil || d.Duration <= 0 {
		return def
	}
	return d.Duration
}
