package report

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// Totals is the delivery health of one subscription as the dispatcher
// keeps it in its checkpoints: the status.delivery counts and times, plus
// what the status has no field for.
type Totals struct {
	Delivered, Failed, DeadLettered int64
	ConsecutiveFailures             int64
	// FailingSince is when the current run of failures began; zero when
	// there is none, or while the clock of sustained failure is stopped
	// (deliveries held).
	FailingSince             time.Time
	LastAttempt, LastSuccess time.Time
	// LastFailure is nil until an attempt failed.
	LastFailure *Failure
	// FilterErrors counts events whose filter failed at runtime since the
	// subscription's spec last changed. The status has no count for them;
	// the Accepted message reports them.
	FilterErrors    int64
	LastFilterError string
}

// ConditionTypes are the condition types the dispatcher owns on a
// subscription, in the order it writes them.
var ConditionTypes = []string{
	hooklinev1.ConditionAccepted,
	hooklinev1.ConditionEndpointHealthy,
	hooklinev1.ConditionSuspended,
	hooklinev1.ConditionEndpointValidated,
}

// TotalsFromStatus returns the totals a status.delivery block records, so
// counting continues from what an earlier writer wrote.
func TotalsFromStatus(d *hooklinev1.DeliveryStatus) Totals {
	if d == nil {
		return Totals{}
	}
	t := Totals{
		Delivered:           d.Delivered,
		Failed:              d.Failed,
		DeadLettered:        d.DeadLettered,
		ConsecutiveFailures: d.ConsecutiveFailures,
	}
	if d.LastAttemptTime != nil {
		t.LastAttempt = d.LastAttemptTime.Time
	}
	if d.LastSuccessTime != nil {
		t.LastSuccess = d.LastSuccessTime.Time
	}
	if d.FailingSince != nil && d.ConsecutiveFailures > 0 {
		t.FailingSince = d.FailingSince.Time
	}
	if f := d.LastFailure; f != nil {
		t.LastFailure = &Failure{Time: f.Time.Time, StatusCode: int(f.StatusCode), Class: f.Class, Message: f.Message}
	}
	return t
}

// DeliveryStatus is the status.delivery block for the totals and the
// subscription's queue state. Times are cut to whole seconds, as the API
// stores them, so a computed block compares equal to one read back.
func DeliveryStatus(t Totals, s State) hooklinev1.DeliveryStatus {
	d := hooklinev1.DeliveryStatus{
		LastAttemptTime:     statusTime(t.LastAttempt),
		LastSuccessTime:     statusTime(t.LastSuccess),
		ConsecutiveFailures: t.ConsecutiveFailures,
		Delivered:           t.Delivered,
		Failed:              t.Failed,
		// The store cannot hold more events than were ever given up on;
		// when it does, the totals started from an older count (a status
		// written before the checkpoints kept them), and the store's number
		// is the better one.
		DeadLettered: max(t.DeadLettered, s.DeadLettered),
		Replayable:   max(s.DeadLettered, 0),
		Backlog:      max(s.Backlog, 0),
		LastReplay:   s.LastReplay,
	}
	if t.ConsecutiveFailures > 0 {
		d.FailingSince = statusTime(t.FailingSince)
	}
	if f := t.LastFailure; f != nil {
		d.LastFailure = &hooklinev1.DeliveryFailure{
			Time:       *statusTime(f.Time),
			StatusCode: int32(f.StatusCode),
			Class:      f.Class,
			Message:    truncate(f.Message, maxMessage),
		}
	}
	return d
}

func statusTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t.UTC().Truncate(time.Second))
	return &mt
}

// Conditions returns the dispatcher's three conditions (ConditionTypes) for
// a subscription:
//
//   - Accepted is True while the dispatcher serves the subscription, and
//     False with the state's reason otherwise. Runtime filter errors are
//     reported in its message.
//   - EndpointHealthy is Unknown before any attempt, True after a success,
//     and False once unhealthyAfter attempts in a row failed (at once when
//     the endpoint answered 410 Gone).
//   - Suspended is True while deliveries are held.
//
// previous are the conditions the status has; those of other types are
// ignored. A condition whose status does not change keeps its
// lastTransitionTime. Each condition records generation.
func Conditions(s State, t Totals, unhealthyAfter int, generation int64, now time.Time, previous []metav1.Condition) []metav1.Condition {
	var out []metav1.Condition
	for _, c := range previous {
		if slices.Contains(ConditionTypes, c.Type) {
			out = append(out, c)
		}
	}
	transition := metav1.NewTime(now.UTC().Truncate(time.Second))
	conds := []metav1.Condition{
		acceptedCondition(s, t),
		healthyCondition(t, unhealthyAfter),
		suspendedCondition(s),
	}
	if s.Validation != nil {
		conds = append(conds, validatedCondition(*s.Validation))
	} else {
		meta.RemoveStatusCondition(&out, hooklinev1.ConditionEndpointValidated)
	}
	for _, c := range conds {
		c.ObservedGeneration = generation
		c.LastTransitionTime = transition
		meta.SetStatusCondition(&out, c)
	}
	slices.SortFunc(out, func(a, b metav1.Condition) int {
		return slices.Index(ConditionTypes, a.Type) - slices.Index(ConditionTypes, b.Type)
	})
	return out
}

func acceptedCondition(s State, t Totals) metav1.Condition {
	c := metav1.Condition{Type: hooklinev1.ConditionAccepted, Reason: s.AcceptedReason, Message: s.AcceptedMessage}
	if !s.Accepted {
		c.Status = metav1.ConditionFalse
		if c.Reason == "" {
			c.Reason = hooklinev1.ReasonNotServed
		}
		if c.Message == "" {
			c.Message = "The dispatcher does not serve this subscription"
		}
		return c
	}
	c.Status = metav1.ConditionTrue
	if c.Reason == "" {
		c.Reason = hooklinev1.ReasonAccepted
	}
	if c.Message == "" {
		c.Message = "The dispatcher delivers the events this subscription selects"
	}
	if t.FilterErrors > 0 {
		c.Message += fmt.Sprintf("; %d %s skipped because the filter failed at runtime, last: %s",
			t.FilterErrors, plural(t.FilterErrors, "event", "events"), truncate(t.LastFilterError, maxMessage))
	}
	return c
}

func healthyCondition(t Totals, unhealthyAfter int) metav1.Condition {
	unhealthyAfter = max(unhealthyAfter, 1)
	c := metav1.Condition{Type: hooklinev1.ConditionEndpointHealthy}
	failing := t.ConsecutiveFailures > 0 && t.LastFailure != nil
	switch {
	case t.LastAttempt.IsZero() && t.LastSuccess.IsZero() && t.LastFailure == nil:
		c.Status, c.Reason = metav1.ConditionUnknown, hooklinev1.ReasonNoDeliveries
		c.Message = "No delivery has been attempted yet"
	case failing && t.LastFailure.StatusCode == 410:
		c.Status, c.Reason = metav1.ConditionFalse, hooklinev1.ReasonEndpointGone
		c.Message = "The endpoint answered 410 Gone at " + formatTime(t.LastFailure.Time)
	case failing && t.LastFailure.Class == string(hooklinev1.ReasonEgressDenied):
		// Not a failing endpoint but a refused one: no number of attempts
		// would change it.
		c.Status, c.Reason = metav1.ConditionFalse, hooklinev1.ReasonEgressDenied
		c.Message = "The dispatcher's egress policy refused the connection: " + describeFailure(*t.LastFailure)
	case failing && t.ConsecutiveFailures >= int64(unhealthyAfter):
		c.Status, c.Reason = metav1.ConditionFalse, hooklinev1.ReasonDeliveryFailing
		c.Message = fmt.Sprintf("%d consecutive %s, last: %s",
			t.ConsecutiveFailures, plural(t.ConsecutiveFailures, "failure", "failures"), describeFailure(*t.LastFailure))
	case failing && t.LastSuccess.IsZero():
		// Too few failures to call the endpoint unhealthy, and no success
		// to call it healthy.
		c.Status, c.Reason = metav1.ConditionUnknown, hooklinev1.ReasonDeliveryFailing
		c.Message = fmt.Sprintf("%d consecutive %s and no success yet, last: %s",
			t.ConsecutiveFailures, plural(t.ConsecutiveFailures, "failure", "failures"), describeFailure(*t.LastFailure))
	case failing:
		c.Status, c.Reason = metav1.ConditionTrue, hooklinev1.ReasonDeliverySucceeded
		c.Message = fmt.Sprintf("%d consecutive %s since the last success, last: %s",
			t.ConsecutiveFailures, plural(t.ConsecutiveFailures, "failure", "failures"), describeFailure(*t.LastFailure))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, hooklinev1.ReasonDeliverySucceeded
		c.Message = "The last delivery attempt succeeded"
	}
	return c
}

func suspendedCondition(s State) metav1.Condition {
	c := metav1.Condition{Type: hooklinev1.ConditionSuspended}
	if s.SuspendedReason == "" {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, hooklinev1.ReasonNotSuspended, "Deliveries are not held"
		return c
	}
	c.Status, c.Reason, c.Message = metav1.ConditionTrue, s.SuspendedReason, s.SuspendedMessage
	if c.Message == "" {
		c.Message = "Deliveries are held; events stay queued"
	}
	return c
}

func validatedCondition(v Validation) metav1.Condition {
	c := metav1.Condition{Type: hooklinev1.ConditionEndpointValidated, Reason: v.Reason, Message: v.Message}
	switch {
	case v.Reason == hooklinev1.ReasonValidationPending:
		c.Status = metav1.ConditionUnknown
	case v.Allowed:
		c.Status = metav1.ConditionTrue
	default:
		c.Status = metav1.ConditionFalse
	}
	return c
}

// SustainedFailure says whether every attempt has failed for at least
// suspendAfter, so that the subscription is to be suspended. A zero
// suspendAfter never suspends.
func SustainedFailure(t Totals, suspendAfter time.Duration, now time.Time) bool {
	return suspendAfter > 0 && t.ConsecutiveFailures > 0 && !t.FailingSince.IsZero() && now.Sub(t.FailingSince) >= suspendAfter
}

// describeFailure says what went wrong in one attempt, for messages:
// "HTTP 503 at 2026-06-01T12:00:00Z" or "Timeout at ...: <message>".
func describeFailure(f Failure) string {
	what := f.Class
	if f.StatusCode != 0 {
		what = fmt.Sprintf("HTTP %d", f.StatusCode)
	} else if what == "" {
		what = "error"
	}
	s := what + " at " + formatTime(f.Time)
	// The attempt's message may start with what was just said ("HTTP 500:
	// Internal Server Error"): say it once.
	msg := strings.TrimPrefix(f.Message, what+": ")
	if msg != "" && msg != what {
		s += ": " + truncate(msg, maxMessage)
	}
	return s
}

func formatTime(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// applyStatus is the part of a subscription's status the dispatcher owns.
// Nothing else may appear in what it applies: with server-side apply, a
// field in the body becomes the dispatcher's, and the controller's fields
// (Ready, Reconciling, Stalled, observedGeneration, dispatcher) must stay
// the controller's.
type applyStatus struct {
	Conditions []metav1.Condition        `json:"conditions"`
	Delivery   hooklinev1.DeliveryStatus `json:"delivery"`
}

// applyBody is the server-side apply body for a subscription's status. It
// carries the object's uid, so the apply fails instead of writing old
// counts into a namesake created after the subscription was deleted, and
// instead of creating an object that is gone.
func applyBody(obj *hooklinev1.WebhookSubscription, st applyStatus) (*unstructured.Unstructured, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		return nil, fmt.Errorf("converting the status of WebhookSubscription %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	if d, _ := content["delivery"].(map[string]any); len(d) == 0 {
		// Applying an empty block that used to hold fields leaves a null
		// the schema refuses; leaving it out removes what was written.
		delete(content, "delivery")
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": content}}
	u.SetAPIVersion(hooklinev1.GroupVersion.String())
	u.SetKind("WebhookSubscription")
	u.SetNamespace(obj.Namespace)
	u.SetName(obj.Name)
	u.SetUID(obj.UID)
	return u, nil
}

// sameStatus says whether two owned statuses would read the same from the
// API server.
func sameStatus(a, b applyStatus) bool {
	if len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for _, ca := range a.Conditions {
		cb := meta.FindStatusCondition(b.Conditions, ca.Type)
		if cb == nil || cb.Status != ca.Status || cb.Reason != ca.Reason || cb.Message != ca.Message ||
			cb.ObservedGeneration != ca.ObservedGeneration || !cb.LastTransitionTime.Equal(&ca.LastTransitionTime) {
			return false
		}
	}
	return sameDelivery(a.Delivery, b.Delivery)
}

func sameDelivery(a, b hooklinev1.DeliveryStatus) bool {
	if !a.LastAttemptTime.Equal(b.LastAttemptTime) || !a.LastSuccessTime.Equal(b.LastSuccessTime) ||
		a.ConsecutiveFailures != b.ConsecutiveFailures || a.Delivered != b.Delivered || a.Failed != b.Failed ||
		a.DeadLettered != b.DeadLettered || a.Replayable != b.Replayable || a.Backlog != b.Backlog || !a.FailingSince.Equal(b.FailingSince) ||
		!sameReplay(a.LastReplay, b.LastReplay) {
		return false
	}
	fa, fb := a.LastFailure, b.LastFailure
	if fa == nil || fb == nil {
		return fa == fb
	}
	return fa.Time.Equal(&fb.Time) && fa.StatusCode == fb.StatusCode && fa.Class == fb.Class && fa.Message == fb.Message
}

func sameReplay(a, b *hooklinev1.ReplayStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Request == b.Request && a.Time.Equal(&b.Time) && a.Replayed == b.Replayed
}

// ownedStatus is the part of a status the dispatcher owns, as read.
func ownedStatus(obj *hooklinev1.WebhookSubscription) applyStatus {
	var st applyStatus
	for _, c := range obj.Status.Conditions {
		if slices.Contains(ConditionTypes, c.Type) {
			st.Conditions = append(st.Conditions, c)
		}
	}
	if obj.Status.Delivery != nil {
		st.Delivery = *obj.Status.Delivery
	}
	return st
}
