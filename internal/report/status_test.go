package report

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

var (
	t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Minute)
	t2 = t0.Add(2 * time.Minute)
)

func TestSustainedFailure(t *testing.T) {
	tests := []struct {
		name         string
		totals       Totals
		suspendAfter time.Duration
		now          time.Time
		want         bool
	}{
		{"failing exactly as long", Totals{ConsecutiveFailures: 3, FailingSince: t0}, time.Hour, t0.Add(time.Hour), true},
		{"failing longer", Totals{ConsecutiveFailures: 3, FailingSince: t0}, time.Hour, t0.Add(5 * time.Hour), true},
		{"failing not long enough", Totals{ConsecutiveFailures: 300, FailingSince: t0}, time.Hour, t0.Add(59 * time.Minute), false},
		{"no run of failures", Totals{FailingSince: t0}, time.Hour, t0.Add(5 * time.Hour), false},
		{"clock stopped", Totals{ConsecutiveFailures: 3}, time.Hour, t0.Add(5 * time.Hour), false},
		{"never suspends", Totals{ConsecutiveFailures: 3, FailingSince: t0}, 0, t0.Add(5000 * time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SustainedFailure(tt.totals, tt.suspendAfter, tt.now); got != tt.want {
				t.Errorf("SustainedFailure() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTotalsFromStatusRoundTrip(t *testing.T) {
	total := Totals{
		Delivered: 4, Failed: 3, DeadLettered: 1, ConsecutiveFailures: 2,
		LastAttempt: t2, LastSuccess: t0, FailingSince: t1,
		LastFailure: &Failure{Time: t2, StatusCode: 500, Class: "HTTPStatus", Message: "boom"},
	}
	d := DeliveryStatus(total, State{Backlog: 9})
	if d.Backlog != 9 {
		t.Errorf("backlog = %d, want 9", d.Backlog)
	}
	if got := TotalsFromStatus(&d); !reflect.DeepEqual(got, total) {
		t.Errorf("TotalsFromStatus(DeliveryStatus(t)) = %+v, want %+v", got, total)
	}
	if got := TotalsFromStatus(nil); !reflect.DeepEqual(got, Totals{}) {
		t.Errorf("TotalsFromStatus(nil) = %+v, want zero", got)
	}
}

func TestDeliveryStatus(t *testing.T) {
	frac := t0.Add(1500 * time.Millisecond)
	tests := []struct {
		name  string
		total Totals
		state State
		want  string
	}{
		{
			name: "nothing yet",
			want: `{}`,
		},
		{
			name:  "times cut to seconds, in UTC",
			total: Totals{Delivered: 1, LastAttempt: frac.In(time.FixedZone("X", 3600)), LastSuccess: frac},
			want:  `{"lastAttemptTime":"2026-06-01T12:00:01Z","lastSuccessTime":"2026-06-01T12:00:01Z","delivered":1}`,
		},
		{
			name:  "last failure",
			total: Totals{Failed: 1, ConsecutiveFailures: 1, LastAttempt: t0, LastFailure: &Failure{Time: t0, StatusCode: 503, Class: "HTTPStatus"}},
			want:  `{"lastAttemptTime":"2026-06-01T12:00:00Z","lastFailure":{"time":"2026-06-01T12:00:00Z","statusCode":503,"class":"HTTPStatus"},"consecutiveFailures":1,"failed":1}`,
		},
		{
			name:  "backlog and dead letters from the queue",
			total: Totals{DeadLettered: 2},
			state: State{Backlog: 40, DeadLettered: 5},
			want:  `{"deadLettered":5,"replayable":5,"backlog":40}`,
		},
		{
			name:  "counted dead letters above the store's",
			total: Totals{DeadLettered: 7},
			state: State{DeadLettered: 5, Backlog: -1},
			want:  `{"deadLettered":7,"replayable":5}`,
		},
		{
			name:  "replayed dead letters stay counted, no longer replayable",
			total: Totals{DeadLettered: 8},
			state: State{DeadLettered: 3},
			want:  `{"deadLettered":8,"replayable":3}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(DeliveryStatus(tt.total, tt.state))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("DeliveryStatus() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// cond is a condition without the fields every case shares.
type cond struct {
	Type, Status, Reason, Message string
}

func TestConditions(t *testing.T) {
	served := State{Accepted: true}
	failure503 := &Failure{Time: t1, StatusCode: 503, Class: "HTTPStatus"}
	tests := []struct {
		name           string
		state          State
		total          Totals
		unhealthyAfter int
		want           []cond
	}{
		{
			name:  "served, nothing attempted",
			state: served,
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "Unknown", "NoDeliveries", "No delivery has been attempted yet"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
			},
		},
		{
			name:  "not served: the state's reason and message",
			state: State{AcceptedReason: hooklinev1.ReasonFilterInvalid, AcceptedMessage: "spec.filter: undeclared reference to 'x'"},
			want: []cond{
				{"Accepted", "False", "FilterInvalid", "spec.filter: undeclared reference to 'x'"},
				{"EndpointHealthy", "Unknown", "NoDeliveries", "No delivery has been attempted yet"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
			},
		},
		{
			name:  "not served without a reason",
			state: State{},
			want: []cond{
				{"Accepted", "False", "NotServed", "The dispatcher does not serve this subscription"},
				{"EndpointHealthy", "Unknown", "NoDeliveries", "No delivery has been attempted yet"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
			},
		},
		{
			name:  "filter errors in the Accepted message",
			state: State{Accepted: true, AcceptedMessage: "Served by team/default"},
			total: Totals{FilterErrors: 2, LastFilterError: "no such key: total"},
			want: []cond{
				{"Accepted", "True", "Accepted", "Served by team/default; 2 events skipped because the filter failed at runtime, last: no such key: total"},
				{"EndpointHealthy", "Unknown", "NoDeliveries", "No delivery has been attempted yet"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
			},
		},
		{
			name:  "healthy after a success",
			state: served,
			total: Totals{Delivered: 1, LastAttempt: t0, LastSuccess: t0},
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "True", "DeliverySucceeded", "The last delivery attempt succeeded"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
			},
		},
		{
			name:  "still healthy below the threshold",
			state: served,
			total: Totals{LastAttempt: t1, LastSuccess: t0, ConsecutiveFailures: 2, LastFailure: failure503},
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "True", "DeliverySucceeded", "2 consecutive failures since the last success, last: HTTP 503 at 2026-06-01T12:01:00Z"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
			},
		},
		{
			name:  "unknown while failing below the threshold without a success",
			state: served,
			total: Totals{LastAttempt: t1, ConsecutiveFailures: 1, LastFailure: &Failure{Time: t1, Class: "Timeout", Message: "no answer within 10s"}},
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "Unknown", "DeliveryFailing", "1 consecutive failure and no success yet, last: Timeout at 2026-06-01T12:01:00Z: no answer within 10s"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
			},
		},
		{
			name:  "unhealthy at the threshold",
			state: served,
			total: Totals{LastAttempt: t1, LastSuccess: t0, ConsecutiveFailures: 3, LastFailure: failure503},
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "False", "DeliveryFailing", "3 consecutive failures, last: HTTP 503 at 2026-06-01T12:01:00Z"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
			},
		},
		{
			name:           "a custom threshold",
			state:          served,
			total:          Totals{LastAttempt: t1, LastSuccess: t0, ConsecutiveFailures: 3, LastFailure: failure503},
			unhealthyAfter: 5,
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "True", "DeliverySucceeded", "3 consecutive failures since the last success, last: HTTP 503 at 2026-06-01T12:01:00Z"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
			},
		},
		{
			name:  "410 Gone at once, and suspended",
			state: State{Accepted: true, SuspendedReason: hooklinev1.ReasonEndpointGone, SuspendedMessage: "The endpoint answered 410 Gone"},
			total: Totals{LastAttempt: t1, LastSuccess: t0, ConsecutiveFailures: 1, LastFailure: &Failure{Time: t1, StatusCode: 410, Class: "HTTPStatus"}},
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "False", "EndpointGone", "The endpoint answered 410 Gone at 2026-06-01T12:01:00Z"},
				{"Suspended", "True", "EndpointGone", "The endpoint answered 410 Gone"},
			},
		},
		{
			name:  "egress refused at once",
			state: served,
			total: Totals{LastAttempt: t1, ConsecutiveFailures: 1, LastFailure: &Failure{Time: t1, Class: "EgressDenied", Message: "egress to 127.0.0.1:443 denied: loopback address"}},
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "False", "EgressDenied", "The dispatcher's egress policy refused the connection: EgressDenied at 2026-06-01T12:01:00Z: egress to 127.0.0.1:443 denied: loopback address"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
			},
		},
		{
			name:  "validation accepted",
			state: State{Accepted: true, Validation: &Validation{Allowed: true, Reason: hooklinev1.ReasonValidationAccepted, Message: "The endpoint allows origin a.example"}},
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "Unknown", "NoDeliveries", "No delivery has been attempted yet"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
				{"EndpointValidated", "True", "ValidationAccepted", "The endpoint allows origin a.example"},
			},
		},
		{
			name:  "validation refused",
			state: State{Accepted: true, Validation: &Validation{Reason: hooklinev1.ReasonValidationRefused, Message: "no WebHook-Allowed-Origin"}},
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "Unknown", "NoDeliveries", "No delivery has been attempted yet"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
				{"EndpointValidated", "False", "ValidationRefused", "no WebHook-Allowed-Origin"},
			},
		},
		{
			name:  "validation pending",
			state: State{Accepted: true, Validation: &Validation{Reason: hooklinev1.ReasonValidationPending, Message: "asking"}},
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "Unknown", "NoDeliveries", "No delivery has been attempted yet"},
				{"Suspended", "False", "NotSuspended", "Deliveries are not held"},
				{"EndpointValidated", "Unknown", "ValidationPending", "asking"},
			},
		},
		{
			name:  "suspended by spec without a message",
			state: State{Accepted: true, SuspendedReason: hooklinev1.ReasonSuspendedBySpec},
			want: []cond{
				{"Accepted", "True", "Accepted", "The dispatcher delivers the events this subscription selects"},
				{"EndpointHealthy", "Unknown", "NoDeliveries", "No delivery has been attempted yet"},
				{"Suspended", "True", "SuspendedBySpec", "Deliveries are held; events stay queued"},
			},
		},
	}
	now := t2.Add(500 * time.Millisecond)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unhealthyAfter := tt.unhealthyAfter
			if unhealthyAfter == 0 {
				unhealthyAfter = DefaultUnhealthyAfter
			}
			got := Conditions(tt.state, tt.total, unhealthyAfter, 7, now, nil)
			var short []cond
			for _, c := range got {
				short = append(short, cond{c.Type, string(c.Status), c.Reason, c.Message})
				if c.ObservedGeneration != 7 {
					t.Errorf("%s: observedGeneration = %d, want 7", c.Type, c.ObservedGeneration)
				}
				if !c.LastTransitionTime.Time.Equal(t2) {
					t.Errorf("%s: lastTransitionTime = %s, want %s (now, whole seconds)", c.Type, c.LastTransitionTime, t2)
				}
			}
			if !reflect.DeepEqual(short, tt.want) {
				t.Errorf("Conditions() =\n%+v\nwant\n%+v", short, tt.want)
			}
		})
	}
}

func TestConditionsTransitions(t *testing.T) {
	before := metav1.NewTime(t0)
	previous := []metav1.Condition{
		{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "controller's", LastTransitionTime: before, ObservedGeneration: 1},
		{Type: "Accepted", Status: "True", Reason: "Accepted", Message: "old message", LastTransitionTime: before, ObservedGeneration: 1},
		{Type: "EndpointHealthy", Status: "True", Reason: "DeliverySucceeded", Message: "The last delivery attempt succeeded", LastTransitionTime: before, ObservedGeneration: 1},
		{Type: "Suspended", Status: "False", Reason: "NotSuspended", Message: "Deliveries are not held", LastTransitionTime: before, ObservedGeneration: 1},
	}
	snapshot := append([]metav1.Condition(nil), previous...)
	total := Totals{LastAttempt: t1, LastSuccess: t0, ConsecutiveFailures: 3, LastFailure: &Failure{Time: t1, StatusCode: 500}}
	got := Conditions(State{Accepted: true, AcceptedMessage: "new message"}, total, 3, 2, t2, previous)

	if !reflect.DeepEqual(previous, snapshot) {
		t.Errorf("Conditions modified its previous argument")
	}
	var types []string
	for _, c := range got {
		types = append(types, c.Type)
		if c.ObservedGeneration != 2 {
			t.Errorf("%s: observedGeneration = %d, want 2", c.Type, c.ObservedGeneration)
		}
	}
	if want := []string{"Accepted", "EndpointHealthy", "Suspended"}; !reflect.DeepEqual(types, want) {
		t.Fatalf("types = %v, want %v (never the controller's Ready)", types, want)
	}
	// Accepted and Suspended kept their status: their transition time stays.
	if !got[0].LastTransitionTime.Equal(&before) || got[0].Message != "new message" {
		t.Errorf("Accepted = %+v, want the old transition time and the new message", got[0])
	}
	if !got[2].LastTransitionTime.Equal(&before) {
		t.Errorf("Suspended lastTransitionTime = %s, want %s", got[2].LastTransitionTime, before)
	}
	// EndpointHealthy turned False: it transitions now.
	if got[1].Status != metav1.ConditionFalse || !got[1].LastTransitionTime.Time.Equal(t2) {
		t.Errorf("EndpointHealthy = %+v, want False since %s", got[1], t2)
	}
}

func TestApplyBody(t *testing.T) {
	obj := &hooklinev1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "billing", UID: "1234", Generation: 3, ResourceVersion: "99",
			Labels: map[string]string{"a": "b"}},
		Spec: hooklinev1.WebhookSubscriptionSpec{URL: "https://example.com/hooks", EventTypes: []string{"order.created"}},
		Status: hooklinev1.WebhookSubscriptionStatus{
			ObservedGeneration: 3,
			Dispatcher:         "hookline-system/default",
			Conditions:         []metav1.Condition{{Type: "Ready", Status: "True", Reason: "Succeeded", LastTransitionTime: metav1.NewTime(t0)}},
		},
	}
	conds := Conditions(State{Accepted: true}, Totals{}, 3, 3, t0, obj.Status.Conditions)
	u, err := applyBody(obj, applyStatus{Conditions: conds, Delivery: DeliveryStatus(Totals{Delivered: 2}, State{Backlog: 1})})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"hookline.dev/v1alpha1","kind":"WebhookSubscription","metadata":{"name":"billing","namespace":"team","uid":"1234"},` +
		`"status":{"conditions":[` +
		`{"lastTransitionTime":"2026-06-01T12:00:00Z","message":"The dispatcher delivers the events this subscription selects","observedGeneration":3,"reason":"Accepted","status":"True","type":"Accepted"},` +
		`{"lastTransitionTime":"2026-06-01T12:00:00Z","message":"No delivery has been attempted yet","observedGeneration":3,"reason":"NoDeliveries","status":"Unknown","type":"EndpointHealthy"},` +
		`{"lastTransitionTime":"2026-06-01T12:00:00Z","message":"Deliveries are not held","observedGeneration":3,"reason":"NotSuspended","status":"False","type":"Suspended"}],` +
		`"delivery":{"backlog":1,"delivered":2}}}`
	if string(got) != want {
		t.Errorf("apply body =\n%s\nwant\n%s", got, want)
	}
}

func TestSameStatus(t *testing.T) {
	base := applyStatus{
		Conditions: Conditions(State{Accepted: true}, Totals{}, 3, 1, t0, nil),
		Delivery:   DeliveryStatus(Totals{Delivered: 1, LastAttempt: t0, LastFailure: &Failure{Time: t0, StatusCode: 500}}, State{}),
	}
	// What the API server returns: the same, decoded from JSON.
	data, err := json.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	var read applyStatus
	if err := json.Unmarshal(data, &read); err != nil {
		t.Fatal(err)
	}
	if !sameStatus(base, read) {
		t.Errorf("a status is not the same as itself read back")
	}
	tests := []struct {
		name   string
		change func(*applyStatus)
	}{
		{"backlog", func(s *applyStatus) { s.Delivery.Backlog++ }},
		{"a count", func(s *applyStatus) { s.Delivery.Delivered++ }},
		{"a time", func(s *applyStatus) { s.Delivery.LastSuccessTime = statusTime(t1) }},
		{"the last failure", func(s *applyStatus) { s.Delivery.LastFailure.StatusCode = 502 }},
		{"no last failure", func(s *applyStatus) { s.Delivery.LastFailure = nil }},
		{"a message", func(s *applyStatus) { s.Conditions[0].Message = "other" }},
		{"a generation", func(s *applyStatus) { s.Conditions[1].ObservedGeneration = 2 }},
		{"a missing condition", func(s *applyStatus) { s.Conditions = s.Conditions[:2] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var changed applyStatus
			if err := json.Unmarshal(data, &changed); err != nil {
				t.Fatal(err)
			}
			tt.change(&changed)
			if sameStatus(base, changed) {
				t.Errorf("a change of %s goes unnoticed", tt.name)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"cut here", 3, "cut"},
		{"añb", 2, "a"}, // never half of ñ
		{"añb", 3, "añ"},
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// A failure's message says each thing once, though the attempt's own
// message may start with the status the description gives first.
func TestDescribeFailure(t *testing.T) {
	for _, tc := range []struct {
		f    Failure
		want string
	}{
		{Failure{Time: t0, StatusCode: 500, Class: "HTTPStatus", Message: "HTTP 500: Internal Server Error"}, "HTTP 500 at 2026-06-01T12:00:00Z: Internal Server Error"},
		{Failure{Time: t0, StatusCode: 503, Class: "HTTPStatus", Message: "HTTP 503"}, "HTTP 503 at 2026-06-01T12:00:00Z"},
		{Failure{Time: t0, StatusCode: 502, Class: "HTTPStatus", Message: "upstream unavailable"}, "HTTP 502 at 2026-06-01T12:00:00Z: upstream unavailable"},
		{Failure{Time: t0, Class: "Timeout", Message: "Timeout after 10s"}, "Timeout at 2026-06-01T12:00:00Z: Timeout after 10s"},
		{Failure{Time: t0, Class: "TLSError", Message: "TLSError: unknown authority"}, "TLSError at 2026-06-01T12:00:00Z: unknown authority"},
	} {
		if got := describeFailure(tc.f); got != tc.want {
			t.Errorf("describeFailure(%+v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}
