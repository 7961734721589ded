package report

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAdd(t *testing.T) {
	long := strings.Repeat("x", maxMessage+50)
	tests := []struct {
		name     string
		totals   Totals
		outcomes []Outcome
		want     Totals
	}{
		{
			name:     "a success counts and is the last attempt",
			outcomes: []Outcome{{Time: t0, Success: true, StatusCode: 200}},
			want:     Totals{Delivered: 1, LastAttempt: t0, LastSuccess: t0},
		},
		{
			name: "failures count and the run starts at the first",
			outcomes: []Outcome{
				{Time: t0, StatusCode: 503, Class: "HTTPStatus", Message: "unavailable"},
				{Time: t1, Class: "Timeout", Message: "Timeout after 10s"},
			},
			want: Totals{
				Failed: 2, ConsecutiveFailures: 2, FailingSince: t0, LastAttempt: t1,
				LastFailure: &Failure{Time: t1, Class: "Timeout", Message: "Timeout after 10s"},
			},
		},
		{
			name:   "a success ends the run of failures",
			totals: Totals{Delivered: 4, Failed: 3, ConsecutiveFailures: 3, FailingSince: t0, LastAttempt: t1, LastFailure: &Failure{Time: t1, Class: "Timeout"}},
			outcomes: []Outcome{
				{Time: t2, Success: true},
			},
			want: Totals{Delivered: 5, Failed: 3, LastAttempt: t2, LastSuccess: t2, LastFailure: &Failure{Time: t1, Class: "Timeout"}},
		},
		{
			name:     "a failure after a success starts a new run",
			totals:   Totals{Delivered: 1, LastAttempt: t0, LastSuccess: t0},
			outcomes: []Outcome{{Time: t1, Class: "Timeout"}},
			want:     Totals{Delivered: 1, Failed: 1, ConsecutiveFailures: 1, FailingSince: t1, LastAttempt: t1, LastSuccess: t0, LastFailure: &Failure{Time: t1, Class: "Timeout"}},
		},
		{
			name:     "a dead-lettered failure counts as both",
			outcomes: []Outcome{{Time: t0, DeadLettered: true, StatusCode: 500, Class: "HTTPStatus"}},
			want:     Totals{Failed: 1, DeadLettered: 1, ConsecutiveFailures: 1, FailingSince: t0, LastAttempt: t0, LastFailure: &Failure{Time: t0, StatusCode: 500, Class: "HTTPStatus"}},
		},
		{
			name:     "a success does not count as dead-lettered",
			outcomes: []Outcome{{Time: t0, Success: true, DeadLettered: true}},
			want:     Totals{Delivered: 1, LastAttempt: t0, LastSuccess: t0},
		},
		{
			name:     "the last failure's message is cut",
			outcomes: []Outcome{{Time: t0, Class: "HTTPStatus", Message: long}},
			want:     Totals{Failed: 1, ConsecutiveFailures: 1, FailingSince: t0, LastAttempt: t0, LastFailure: &Failure{Time: t0, Class: "HTTPStatus", Message: long[:maxMessage]}},
		},
		{
			// Several workers serve a subscription: a success that finished
			// before the latest one does not end the run that followed it.
			name:     "a late success does not end a later run",
			totals:   Totals{Delivered: 1, Failed: 1, ConsecutiveFailures: 1, FailingSince: t2, LastAttempt: t2, LastSuccess: t1, LastFailure: &Failure{Time: t2}},
			outcomes: []Outcome{{Time: t0, Success: true}},
			want:     Totals{Delivered: 2, Failed: 1, ConsecutiveFailures: 1, FailingSince: t2, LastAttempt: t2, LastSuccess: t1, LastFailure: &Failure{Time: t2}},
		},
		{
			name:     "a late failure counts but does not join the run a later success ended",
			totals:   Totals{Delivered: 1, LastAttempt: t2, LastSuccess: t2},
			outcomes: []Outcome{{Time: t1, Class: "Timeout"}},
			want:     Totals{Delivered: 1, Failed: 1, LastAttempt: t2, LastSuccess: t2, LastFailure: &Failure{Time: t1, Class: "Timeout"}},
		},
		{
			name:     "a late failure moves the start of the run back",
			totals:   Totals{Failed: 1, ConsecutiveFailures: 1, FailingSince: t2, LastAttempt: t2, LastFailure: &Failure{Time: t2, Class: "Timeout"}},
			outcomes: []Outcome{{Time: t1, StatusCode: 503}},
			want:     Totals{Failed: 2, ConsecutiveFailures: 2, FailingSince: t1, LastAttempt: t2, LastFailure: &Failure{Time: t2, Class: "Timeout"}},
		},
		{
			name:     "a time JSON cannot hold is dropped",
			outcomes: []Outcome{{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Success: true}},
			want:     Totals{Delivered: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.totals
			for _, o := range tt.outcomes {
				got = Add(got, o)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Add() = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// Add returns new totals: the failure the caller's totals point to is not
// changed under it.
func TestAddDoesNotShareFailure(t *testing.T) {
	before := Totals{Failed: 1, LastFailure: &Failure{Time: t0, Message: "first"}}
	after := Add(before, Outcome{Time: t1, Message: "second"})
	if before.LastFailure.Message != "first" || after.LastFailure.Message != "second" {
		t.Errorf("last failures before and after = %q and %q, want \"first\" and \"second\"", before.LastFailure.Message, after.LastFailure.Message)
	}
}

func TestAddFilterError(t *testing.T) {
	long := strings.Repeat("é", maxMessage) // two bytes each
	got := AddFilterError(Totals{Delivered: 3}, "no such key: total")
	got = AddFilterError(got, long)
	want := Totals{Delivered: 3, FilterErrors: 2, LastFilterError: long[:maxMessage]}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AddFilterError() = %+v, want %+v", got, want)
	}
}
