package cli

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func cond(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg}
}

func subscription(name string, conds []metav1.Condition, d *hooklinev1.DeliveryStatus, mutate ...func(*hooklinev1.WebhookSubscription)) *hooklinev1.WebhookSubscription {
	s := &hooklinev1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Status:     hooklinev1.WebhookSubscriptionStatus{Conditions: conds, Delivery: d, Dispatcher: "hookline-system/default"},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func at(ago time.Duration) *metav1.Time {
	t := metav1.NewTime(testNow.Add(-ago))
	return &t
}

func TestStatusRows(t *testing.T) {
	healthy := subscription("orders", []metav1.Condition{
		cond(hooklinev1.ConditionReady, metav1.ConditionTrue, hooklinev1.ReasonSucceeded, "served"),
		cond(hooklinev1.ConditionEndpointHealthy, metav1.ConditionTrue, hooklinev1.ReasonDeliverySucceeded, ""),
	}, &hooklinev1.DeliveryStatus{LastSuccessTime: at(12 * time.Second), Delivered: 7, Backlog: 1})
	failing := subscription("billing", []metav1.Condition{
		cond(hooklinev1.ConditionReady, metav1.ConditionFalse, hooklinev1.ReasonEndpointUnhealthy, "deliveries fail"),
		cond(hooklinev1.ConditionEndpointHealthy, metav1.ConditionFalse, hooklinev1.ReasonDeliveryFailing, "3 attempts failed in a row, last: HTTP 500"),
	}, &hooklinev1.DeliveryStatus{
		LastSuccessTime: at(3 * time.Hour),
		LastFailure:     &hooklinev1.DeliveryFailure{Time: *at(5 * time.Second), StatusCode: 500, Class: "HTTPStatus", Message: "Internal Server Error"},
		Delivered:       40, Failed: 9, DeadLettered: 3, Replayable: 2,
	})
	gone := subscription("gone", []metav1.Condition{
		cond(hooklinev1.ConditionReady, metav1.ConditionFalse, hooklinev1.ReasonEndpointGone, "410"),
		cond(hooklinev1.ConditionSuspended, metav1.ConditionTrue, hooklinev1.ReasonEndpointGone, "the endpoint answered 410 Gone"),
	}, &hooklinev1.DeliveryStatus{LastFailure: &hooklinev1.DeliveryFailure{Time: *at(2 * time.Minute), Class: "TLSError"}})
	paused := subscription("paused", []metav1.Condition{
		cond(hooklinev1.ConditionReady, metav1.ConditionTrue, hooklinev1.ReasonSuspended, "suspended by spec.suspend"),
		cond(hooklinev1.ConditionSuspended, metav1.ConditionTrue, hooklinev1.ReasonSuspendedBySpec, "spec.suspend is true"),
	}, nil, func(s *hooklinev1.WebhookSubscription) { s.Spec.Suspend = true })
	fresh := subscription("fresh", nil, nil)
	waiting := subscription("waiting", []metav1.Condition{
		cond(hooklinev1.ConditionReady, metav1.ConditionFalse, hooklinev1.ReasonSecretNotFound, "WebhookSecret signing not found"),
	}, nil)

	for _, tc := range []struct {
		sub   *hooklinev1.WebhookSubscription
		cells []string
	}{
		// The reason is Ready's, as kubectl get whsub shows it.
		{healthy, []string{"orders", "True", "True", "12s", "never", "Succeeded", "1", "0", "0", "false"}},
		{failing, []string{"billing", "False", "False", "3h", "5s (HTTPStatus 500)", "EndpointUnhealthy", "0", "3", "2", "false"}},
		{gone, []string{"gone", "False", "-", "never", "2m (TLSError)", "EndpointGone", "0", "0", "0", "true"}},
		{paused, []string{"paused", "True", "-", "never", "never", "Suspended", "0", "0", "0", "true"}},
		{fresh, []string{"fresh", "-", "-", "never", "never", "-", "0", "0", "0", "false"}},
		{waiting, []string{"waiting", "False", "-", "never", "never", "SecretNotFound", "0", "0", "0", "false"}},
	} {
		t.Run(tc.sub.Name, func(t *testing.T) {
			got := statusCells(statusRowOf(tc.sub), false, testNow)
			if len(got) != len(tc.cells) {
				t.Fatalf("cells %q, want %q", got, tc.cells)
			}
			for i := range got {
				if got[i] != tc.cells[i] {
					t.Errorf("cells %q, want %q", got, tc.cells)
					break
				}
			}
		})
	}

	if row := statusRowOf(failing); row.Message != "deliveries fail" {
		t.Errorf("the message of a failing subscription is %q, want Ready's", row.Message)
	}

	var buf bytes.Buffer
	rows := []StatusRow{statusRowOf(healthy), statusRowOf(failing)}
	if err := printStatusTable(&buf, rows, true, false, testNow); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAMESPACE   NAME      READY   HEALTHY   LAST SUCCESS   LAST FAILURE          REASON              BACKLOG   DEAD-LETTERED   REPLAYABLE   SUSPENDED\n" +
		"shop        orders    True    True      12s            never                 Succeeded           1         0               0            false\n" +
		"shop        billing   False   False     3h             5s (HTTPStatus 500)   EndpointUnhealthy   0         3               2            false\n"
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}

	buf.Reset()
	if err := printStatusTable(&buf, rows, false, true, testNow); err != nil {
		t.Fatal(err)
	}
	want = "" +
		"NAME      READY   HEALTHY   LAST SUCCESS   LAST FAILURE          REASON              BACKLOG   DELIVERED   FAILED ATTEMPTS   DEAD-LETTERED   REPLAYABLE   SUSPENDED   DISPATCHER\n" +
		"orders    True    True      12s            never                 Succeeded           1         7           0                 0               0            false       hookline-system/default\n" +
		"billing   False   False     3h             5s (HTTPStatus 500)   EndpointUnhealthy   0         40          9                 3               2            false       hookline-system/default\n"
	if buf.String() != want {
		t.Errorf("wide table:\n%s\nwant:\n%s", buf.String(), want)
	}

	buf.Reset()
	printDetails(&buf, statusRowOf(failing))
	if want := "\nEndpointUnhealthy: deliveries fail\nLast failure (2026-11-29T19:59:55Z): Internal Server Error\n"; buf.String() != want {
		t.Errorf("details %q, want %q", buf.String(), want)
	}
}

func TestStatusJSONShape(t *testing.T) {
	sub := subscription("billing", []metav1.Condition{
		cond(hooklinev1.ConditionReady, metav1.ConditionTrue, hooklinev1.ReasonSucceeded, ""),
		cond(hooklinev1.ConditionEndpointHealthy, metav1.ConditionTrue, hooklinev1.ReasonDeliverySucceeded, ""),
	}, &hooklinev1.DeliveryStatus{LastSuccessTime: at(time.Minute), Delivered: 2})
	out, err := json.Marshal(StatusList{Items: []StatusRow{statusRowOf(sub)}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"items":[{"namespace":"shop","name":"billing","ready":"True","healthy":"True","reason":"Succeeded","message":"",` +
		`"lastSuccessTime":"2026-11-29T19:59:00Z","lastFailure":null,"backlog":0,"deadLettered":0,"replayable":0,"delivered":2,"failed":0,` +
		`"suspended":false,"dispatcher":"hookline-system/default"}]}`
	if string(out) != want {
		t.Errorf("JSON\n%s\nwant\n%s", out, want)
	}

	// A failure keeps every field, zero or not.
	sub.Status.Delivery.LastFailure = &hooklinev1.DeliveryFailure{Time: *at(time.Second), Class: "Timeout"}
	out, err = json.Marshal(statusRowOf(sub).LastFailure)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"time":"2026-11-29T19:59:59Z","statusCode":0,"class":"Timeout","message":""}`; string(out) != want {
		t.Errorf("lastFailure %s, want %s", out, want)
	}
}

func TestReplayProgress(t *testing.T) {
	before := &hooklinev1.DeliveryStatus{Delivered: 10, Failed: 4, DeadLettered: 2}
	for _, tc := range []struct {
		name string
		now  hooklinev1.DeliveryStatus
		want progress
	}{
		{"status not yet written after the replay", hooklinev1.DeliveryStatus{Delivered: 10, Failed: 4, DeadLettered: 2},
			progress{}},
		{"one delivered, one waiting", hooklinev1.DeliveryStatus{Delivered: 11, Failed: 4, DeadLettered: 2, Backlog: 1},
			progress{backlog: 1, delivered: 1}},
		{"both delivered", hooklinev1.DeliveryStatus{Delivered: 12, Failed: 4, DeadLettered: 2},
			progress{delivered: 2, done: true}},
		{"one dead-lettered again", hooklinev1.DeliveryStatus{Delivered: 11, Failed: 5, DeadLettered: 3},
			progress{delivered: 1, failed: 1, deadLettered: 1, done: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := replayProgress(before, &tc.now, 2); got != tc.want {
				t.Errorf("progress %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRotationChecks(t *testing.T) {
	expires := metav1.NewTime(time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC))
	ws := &hooklinev1.WebhookSecret{Status: hooklinev1.WebhookSecretStatus{
		CurrentKeyID:             "k-new",
		LastHandledRotateRequest: "req-2",
		Keys:                     []hooklinev1.KeyStatus{{ID: "k-new", Current: true}, {ID: "k-old", ExpiresAt: &expires}},
	}}
	for _, tc := range []struct {
		oldKey, request string
		want            bool
	}{
		{"k-old", "req-2", true},
		{"k-old", "req-3", false}, // another request was handled
		{"k-new", "req-2", false}, // no new key
	} {
		if got := rotated(ws, tc.oldKey, tc.request); got != tc.want {
			t.Errorf("rotated(%s, %s) = %v, want %v", tc.oldKey, tc.request, got, tc.want)
		}
	}
	if got := previousKeyFate(ws, "k-old"); got != "the old key signs too until 2026-11-30T20:00:00Z" {
		t.Errorf("fate %q", got)
	}
	if got := previousKeyFate(ws, "k-gone"); got != "the old key no longer signs" {
		t.Errorf("fate %q", got)
	}
	r1, err := rotateRequest(testNow)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := rotateRequest(testNow)
	if r1 == r2 || len(r1) != len("2026-11-29T20:00:00Z-")+8 || r1[:21] != "2026-11-29T20:00:00Z-" {
		t.Errorf("requests %q and %q, want the time and distinct random suffixes", r1, r2)
	}
}

func TestReadyPod(t *testing.T) {
	pod := func(name string, phase corev1.PodPhase, ready corev1.ConditionStatus) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{
			Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}}
	}
	deleting := pod("a-0", corev1.PodRunning, corev1.ConditionTrue)
	deleting.DeletionTimestamp = &metav1.Time{Time: testNow}
	pods := []corev1.Pod{
		pod("d-2", corev1.PodRunning, corev1.ConditionTrue),
		pod("d-1", corev1.PodRunning, corev1.ConditionTrue),
		pod("d-0", corev1.PodRunning, corev1.ConditionFalse),
		pod("c-0", corev1.PodPending, corev1.ConditionTrue),
		deleting,
	}
	if got := readyPod(pods); got != "d-1" {
		t.Errorf("readyPod = %q, want d-1", got)
	}
	if got := readyPod(pods[2:]); got != "" {
		t.Errorf("readyPod without a ready one = %q", got)
	}
}
