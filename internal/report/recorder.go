package report

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Key identifies a subscription. UID tells a subscription from a namesake
// created after it was deleted, whose status must not receive its counts.
type Key struct {
	Namespace, Name string
	UID             string
}

// Outcome is the result of one delivery attempt.
type Outcome struct {
	// Time the attempt finished.
	Time time.Time
	// Success is true when the endpoint answered 2xx.
	Success bool
	// DeadLettered is true when the event was given up on after this
	// failed attempt. It has no meaning on a success.
	DeadLettered bool
	// StatusCode the endpoint answered, 0 when it did not answer.
	StatusCode int
	// Class of the error, "" on success.
	Class string
	// Message is a short description, without secret material.
	Message string
	// Latency of the attempt. The status has no field for it; it is here
	// so the caller can feed metrics from the same value.
	Latency time.Duration
}

// Delta is what one replica recorded for one subscription during one
// window (between two flushes). It is part of the payload replicas share.
type Delta struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	// Delivered counts successful attempts.
	Delivered int64 `json:"delivered,omitempty"`
	// Failed counts failed attempts.
	Failed int64 `json:"failed,omitempty"`
	// DeadLettered counts events given up on.
	DeadLettered int64 `json:"deadLettered,omitempty"`
	// LastAttempt and LastSuccess are the latest times of the window.
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// LastFailure is the latest failed attempt of the window.
	LastFailure *Failure `json:"lastFailure,omitempty"`
	// ConsecutiveFailures counts the failures after the window's last
	// success, or all its failures when it had none.
	ConsecutiveFailures int64 `json:"consecutiveFailures,omitempty"`
	// Succeeded says whether the window had a success, which ends the
	// run of failures the totals carry.
	Succeeded bool `json:"succeeded,omitempty"`
	// FailingSince is the time of the first of the ConsecutiveFailures.
	FailingSince time.Time `json:"failingSince,omitzero"`
	// FilterErrors counts events whose filter failed at runtime.
	FilterErrors int64 `json:"filterErrors,omitempty"`
	// LastFilterError is the message of the last of them.
	LastFilterError string `json:"lastFilterError,omitempty"`
}

// Failure describes one failed attempt.
type Failure struct {
	Time       time.Time `json:"time"`
	StatusCode int       `json:"statusCode,omitempty"`
	Class      string    `json:"class,omitempty"`
	Message    string    `json:"message,omitempty"`
}

// payload is what Recorder.Flush serialises.
type payload struct {
	// ID is unique per flush: replica, incarnation, sequence. The writer
	// uses it to recognise a payload the queue hands out again.
	ID            string  `json:"id"`
	Replica       string  `json:"replica"`
	Subscriptions []Delta `json:"subscriptions"`
}

// maxMessage bounds failure and filter error messages, in bytes: the
// status shows a short description, not a response body.
const maxMessage = 256

// idleFlushes is how many flushes without activity a key survives before
// the Recorder forgets it, so deleted subscriptions do not accumulate.
const idleFlushes = 300

// Recorder accumulates outcomes in memory between flushes. It is safe for
// concurrent use and cheap on the delivery path: each subscription has its
// own lock, and recording for a known subscription does not allocate.
type Recorder struct {
	replica string
	// incarnation tells this process's payloads from those of an earlier
	// process of the same replica, whose sequence also started at one.
	incarnation string
	seq         atomic.Uint64

	mu      sync.RWMutex
	entries map[Key]*entry
}

// entry is one subscription's window.
type entry struct {
	mu sync.Mutex
	// removed is set when Flush forgets the entry; a Record that found it
	// just before looks it up again.
	removed bool
	// idle counts flushes without activity. Only Flush touches it.
	idle int
	w    window
}

// window is what happened to one subscription since the last flush.
type window struct {
	active                          bool
	delivered, failed, deadLettered int64
	lastAttempt, lastSuccess        time.Time
	lastFailure                     Failure
	hasFailure, succeeded           bool
	consecutive                     int64
	runStart                        time.Time // first failure after the last success
	filterErrors                    int64
	lastFilterError                 string
}

// NewRecorder returns a Recorder whose payloads name replica.
func NewRecorder(replica string) *Recorder {
	var b [6]byte
	// crypto/rand.Read never fails on supported platforms.
	_, _ = rand.Read(b[:])
	return &Recorder{
		replica:     replica,
		incarnation: hex.EncodeToString(b[:]),
		entries:     make(map[Key]*entry),
	}
}

// Record adds the outcome of one attempt for subscription k.
func (r *Recorder) Record(k Key, o Outcome) {
	r.update(k, func(w *window) { w.record(o) })
}

// FilterError counts an event of subscription k that was not delivered
// because its filter failed at runtime; msg says why, without event data
// beyond what CEL puts in its errors.
func (r *Recorder) FilterError(k Key, msg string) {
	r.update(k, func(w *window) {
		w.active = true
		w.filterErrors++
		w.lastFilterError = msg
	})
}

func (r *Recorder) update(k Key, f func(*window)) {
	for {
		e := r.entry(k)
		e.mu.Lock()
		if e.removed {
			e.mu.Unlock()
			continue
		}
		f(&e.w)
		e.mu.Unlock()
		return
	}
}

func (r *Recorder) entry(k Key) *entry {
	r.mu.RLock()
	e := r.entries[k]
	r.mu.RUnlock()
	if e != nil {
		return e
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e = r.entries[k]; e == nil {
		e = &entry{}
		r.entries[k] = e
	}
	return e
}

func (w *window) record(o Outcome) {
	w.active = true
	t := validTime(o.Time)
	if t.After(w.lastAttempt) {
		w.lastAttempt = t
	}
	if o.Success {
		w.delivered++
		if t.After(w.lastSuccess) {
			w.lastSuccess = t
		}
		w.succeeded = true
		w.consecutive = 0
		w.runStart = time.Time{}
		return
	}
	w.failed++
	w.consecutive++
	if w.consecutive == 1 || t.Before(w.runStart) {
		w.runStart = t
	}
	if o.DeadLettered {
		w.deadLettered++
	}
	if !w.hasFailure || !t.Before(w.lastFailure.Time) {
		// The message is kept as given and cut at flush time, so the
		// delivery path does not allocate.
		w.lastFailure = Failure{Time: t, StatusCode: o.StatusCode, Class: o.Class, Message: o.Message}
		w.hasFailure = true
	}
}

func (w *window) delta(k Key) Delta {
	d := Delta{
		Namespace:           k.Namespace,
		Name:                k.Name,
		UID:                 k.UID,
		Delivered:           w.delivered,
		Failed:              w.failed,
		DeadLettered:        w.deadLettered,
		LastAttempt:         w.lastAttempt,
		LastSuccess:         w.lastSuccess,
		ConsecutiveFailures: w.consecutive,
		Succeeded:           w.succeeded,
		FailingSince:        w.runStart,
		FilterErrors:        w.filterErrors,
		LastFilterError:     truncate(w.lastFilterError, maxMessage),
	}
	if w.hasFailure {
		f := w.lastFailure
		f.Message = truncate(f.Message, maxMessage)
		d.LastFailure = &f
	}
	return d
}

// Flush returns what was recorded since the last Flush as one payload, or
// nil when nothing was. The payload carries an id unique to this call, so
// whoever applies it can recognise it if it comes twice.
func (r *Recorder) Flush() []byte {
	var deltas []Delta
	r.mu.Lock()
	for k, e := range r.entries {
		e.mu.Lock()
		if e.w.active {
			deltas = append(deltas, e.w.delta(k))
			e.w = window{}
			e.idle = 0
		} else if e.idle++; e.idle >= idleFlushes {
			e.removed = true
			delete(r.entries, k)
		}
		e.mu.Unlock()
	}
	r.mu.Unlock()
	if len(deltas) == 0 {
		return nil
	}
	slices.SortFunc(deltas, func(a, b Delta) int {
		return strings.Compare(a.Namespace+"/"+a.Name+"/"+a.UID, b.Namespace+"/"+b.Name+"/"+b.UID)
	})
	p := payload{
		ID:            fmt.Sprintf("%s/%s/%d", r.replica, r.incarnation, r.seq.Add(1)),
		Replica:       r.replica,
		Subscriptions: deltas,
	}
	data, err := json.Marshal(p)
	if err != nil {
		// Unreachable: the payload holds only strings, numbers and times
		// that validTime keeps within what JSON can encode.
		panic(fmt.Sprintf("encoding a delivery report: %v", err))
	}
	return data
}

// validTime returns t, or the zero time when JSON cannot encode t.
func validTime(t time.Time) time.Time {
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}
	}
	return t
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Add returns the totals with one more outcome counted, as a window
// holding only that outcome would merge into them.
func Add(t Totals, o Outcome) Totals {
	var w window
	w.record(o)
	return Merge(t, w.delta(Key{}))
}

// AddFilterError returns the totals with one more event whose filter failed
// at runtime, msg saying why.
func AddFilterError(t Totals, msg string) Totals {
	t.FilterErrors++
	t.LastFilterError = truncate(msg, maxMessage)
	return t
}
