package receiver_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/keys"
	"github.com/hookline/hookline/pkg/receiver"
)

var sentAt = time.Date(2026, 5, 4, 10, 30, 0, 0, time.UTC)

var orderCreated = delivery.Message{
	ID:   "evt_2uS7pQ4ZRk.retry-safe",
	Type: "order.created",
	Time: time.Date(2026, 5, 4, 10, 29, 58, 123456789, time.UTC),
	Data: json.RawMessage(`{"orderId":"o-1001","amount":1999,"note":"<a&b>"}`),
}

func generate(t *testing.T, alg keys.Algorithm) keys.Key {
	t.Helper()
	k, err := keys.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// trust turns what a receiver is given (the Secret's signing-key, or
// public-key for Ed25519) into a receiver Key.
func trust(t *testing.T, k keys.Key) receiver.Key {
	t.Helper()
	form := k.Encoded()
	if k.Algorithm() == keys.Ed25519 {
		form = k.PublicKey()
	}
	rk, err := receiver.ParseKey(form)
	if err != nil {
		t.Fatalf("receiver refused %v: %v", k, err)
	}
	return rk
}

func TestKeyIDsMatchHookline(t *testing.T) {
	for _, alg := range []keys.Algorithm{keys.HMACSHA256, keys.Ed25519} {
		k := generate(t, alg)
		fromSecret, err := receiver.ParseKey(k.Encoded())
		if err != nil {
			t.Fatal(err)
		}
		if fromSecret.ID() != k.ID() || string(fromSecret.Algorithm()) != string(k.Algorithm()) {
			t.Errorf("%s: receiver key %v, Hookline key %v", alg, fromSecret, k)
		}
		if alg == keys.Ed25519 {
			if fromPublic := trust(t, k); fromPublic.ID() != k.ID() {
				t.Errorf("public key ID %s, Hookline %s", fromPublic.ID(), k.ID())
			}
		}
	}
}

// capture is the handler behind the middleware in the dispatcher tests.
type capture struct {
	mu     sync.Mutex
	events []receiver.Event
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e, ok := receiver.EventFrom(r.Context())
	if !ok {
		http.Error(w, "no event", http.StatusInternalServerError)
		return
	}
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (c *capture) all() []receiver.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]receiver.Event(nil), c.events...)
}

func TestDispatcherDeliveriesVerify(t *testing.T) {
	hmacOld, hmacNew := generate(t, keys.HMACSHA256), generate(t, keys.HMACSHA256)
	edOld, edNew := generate(t, keys.Ed25519), generate(t, keys.Ed25519)
	for _, tc := range []struct {
		name     string
		signWith []keys.Key
		trusted  []keys.Key
		want     bool
	}{
		{"HMAC", []keys.Key{hmacNew}, []keys.Key{hmacNew}, true},
		{"Ed25519", []keys.Key{edNew}, []keys.Key{edNew}, true},
		{"rotation, receiver not yet updated", []keys.Key{hmacNew, hmacOld}, []keys.Key{hmacOld}, true},
		{"rotation, receiver updated", []keys.Key{hmacNew, hmacOld}, []keys.Key{hmacNew}, true},
		{"rotation, receiver with both", []keys.Key{hmacNew, hmacOld}, []keys.Key{hmacNew, hmacOld}, true},
		{"Ed25519 rotation, old key", []keys.Key{edNew, edOld}, []keys.Key{edOld}, true},
		{"HMAC to Ed25519, HMAC receiver", []keys.Key{edNew, hmacOld}, []keys.Key{hmacOld}, true},
		{"HMAC to Ed25519, Ed25519 receiver", []keys.Key{edNew, hmacOld}, []keys.Key{edNew}, true},
		{"after the overlap, old receiver", []keys.Key{hmacNew}, []keys.Key{hmacOld}, false},
		{"unrelated Ed25519 key", []keys.Key{edNew}, []keys.Key{edOld}, false},
		{"HMAC receiver, Ed25519 sender", []keys.Key{edNew}, []keys.Key{hmacNew}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trusted := make(receiver.StaticKeys, len(tc.trusted))
			for i, k := range tc.trusted {
				trusted[i] = trust(t, k)
			}
			next := &capture{}
			srv := httptest.NewServer(receiver.Middleware(next, receiver.MiddlewareOptions{
				Keys:   trusted,
				Now:    func() time.Time { return sentAt.Add(90 * time.Second) },
				Logger: slog.New(slog.DiscardHandler),
			}))
			defer srv.Close()
			sender := &delivery.Sender{Client: delivery.NewClient(delivery.ClientOptions{}), Clock: clocktesting.NewFakePassiveClock(sentAt)}
			res := sender.Send(context.Background(), delivery.Target{URL: srv.URL + "/hooks", Keys: tc.signWith}, orderCreated)
			got := next.all()
			if !tc.want {
				if res.Success || res.StatusCode != http.StatusUnauthorized || res.Class != delivery.ClassHTTPStatus ||
					!strings.Contains(res.Message, "no_matching_signature") || len(got) != 0 {
					t.Fatalf("result %+v, %d events; want a 401 no_matching_signature", res, len(got))
				}
				return
			}
			if !res.Success || res.StatusCode != http.StatusNoContent {
				t.Fatalf("result %+v, want the handler's 204", res)
			}
			if len(got) != 1 {
				t.Fatalf("handler got %d events", len(got))
			}
			e := got[0]
			if e.ID != orderCreated.ID || e.Type != orderCreated.Type || !e.Timestamp.Equal(orderCreated.Time) || string(e.Data) != string(orderCreated.Data) {
				t.Fatalf("event %+v, want %+v", e, orderCreated)
			}
			// A retry of the same event is acknowledged, not processed.
			res = sender.Send(context.Background(), delivery.Target{URL: srv.URL + "/hooks", Keys: tc.signWith}, orderCreated)
			if !res.Success || res.StatusCode != http.StatusOK || len(next.all()) != 1 {
				t.Fatalf("retry: %+v, %d events", res, len(next.all()))
			}
		})
	}
}

func TestDispatcherDeliveryOutsideTolerance(t *testing.T) {
	k := generate(t, keys.HMACSHA256)
	for _, tc := range []struct {
		skew time.Duration
		code string
	}{
		{6 * time.Minute, "timestamp_too_old"},
		{-6 * time.Minute, "timestamp_too_new"},
	} {
		srv := httptest.NewServer(receiver.Middleware(&capture{}, receiver.MiddlewareOptions{
			Keys:   receiver.StaticKeys{trust(t, k)},
			Now:    func() time.Time { return sentAt.Add(tc.skew) },
			Logger: slog.New(slog.DiscardHandler),
		}))
		sender := &delivery.Sender{Client: delivery.NewClient(delivery.ClientOptions{}), Clock: clocktesting.NewFakePassiveClock(sentAt)}
		res := sender.Send(context.Background(), delivery.Target{URL: srv.URL, Keys: []keys.Key{k}}, orderCreated)
		srv.Close()
		if res.StatusCode != http.StatusUnauthorized || !strings.Contains(res.Message, tc.code) {
			t.Errorf("receiver clock %s off: %+v, want 401 %s", tc.skew, res, tc.code)
		}
	}
}

// referenceCase is a delivery derived from one the reference library
// signed.
type referenceCase struct {
	name   string
	header http.Header
	body   []byte
}

func TestReferenceLibraryAgreement(t *testing.T) {
	secret := generate(t, keys.HMACSHA256).Encoded()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	key, err := receiver.ParseKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	// Both sides read the system clock: the reference library has no
	// other. Timestamps stay well away from the tolerance edges.
	now := time.Now()
	body := []byte(`{"type":"invoice.paid","timestamp":"2026-05-04T10:29:58Z","data":{"id":"in_1"}}`)
	sign := func(id string, at time.Time, payload []byte) string {
		sig, err := wh.Sign(id, at, payload)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	hdr := func(id string, at time.Time, sig string) http.Header {
		h := http.Header{}
		h.Set(receiver.HeaderID, id)
		h.Set(receiver.HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
		h.Set(receiver.HeaderSignature, sig)
		return h
	}
	good := sign("msg_1", now, body)
	other, _ := standardwebhooks.NewWebhook(generate(t, keys.HMACSHA256).Encoded())
	otherSig, _ := other.Sign("msg_1", now, body)

	accepted := []referenceCase{
		{"as signed", hdr("msg_1", now, good), body},
		{"with a second key's entry", hdr("msg_1", now, otherSig+" "+good), body},
		{"unknown versions around", hdr("msg_1", now, "v2,AAAA "+good+" v1a,BBBB"), body},
		{"double spaces", hdr("msg_1", now, "  "+good+"  "), body},
		{"a minute old", hdr("msg_1", now.Add(-time.Minute), sign("msg_1", now.Add(-time.Minute), body)), body},
		{"a minute ahead", hdr("msg_1", now.Add(time.Minute), sign("msg_1", now.Add(time.Minute), body)), body},
		{"ID with full stops", hdr("evt.1.2", now, sign("evt.1.2", now, body)), body},
		{"empty body", hdr("msg_1", now, sign("msg_1", now, nil)), nil},
	}
	for _, c := range accepted {
		if err := receiver.Verify(c.header, c.body, []receiver.Key{key}); err != nil {
			t.Errorf("%s: receiver: %v", c.name, err)
		}
		if err := wh.Verify(c.body, c.header); err != nil {
			t.Errorf("%s: reference library: %v", c.name, err)
		}
	}

	withHeader := func(name, value string) http.Header {
		h := hdr("msg_1", now, good)
		h[name] = []string{value}
		return h
	}
	repeated := hdr("msg_1", now, good)
	repeated.Add(receiver.HeaderSignature, "v1,AAAA")
	refused := []struct {
		referenceCase
		want error
	}{
		{referenceCase{"tampered body", hdr("msg_1", now, good), append(append([]byte(nil), body...), ' ')}, receiver.ErrNoMatchingSignature},
		{referenceCase{"wrong key", hdr("msg_1", now, otherSig), body}, receiver.ErrNoMatchingSignature},
		{referenceCase{"other ID", hdr("msg_2", now, good), body}, receiver.ErrNoMatchingSignature},
		{referenceCase{"ten minutes old", hdr("msg_1", now.Add(-10*time.Minute), sign("msg_1", now.Add(-10*time.Minute), body)), body}, receiver.ErrTooOld},
		{referenceCase{"ten minutes ahead", hdr("msg_1", now.Add(10*time.Minute), sign("msg_1", now.Add(10*time.Minute), body)), body}, receiver.ErrTooNew},
		{referenceCase{"no signature", withHeader("Webhook-Signature", ""), body}, receiver.ErrMissingHeader},
		{referenceCase{"timestamp with a sign", withHeader("Webhook-Timestamp", "+"+strconv.FormatInt(now.Unix(), 10)), body}, receiver.ErrInvalidTimestamp},
		{referenceCase{"timestamp with a leading zero", withHeader("Webhook-Timestamp", "0"+strconv.FormatInt(now.Unix(), 10)), body}, receiver.ErrInvalidTimestamp},
		{referenceCase{"trailing signature part", withHeader("Webhook-Signature", good+",extra"), body}, receiver.ErrInvalidSignatureHeader},
		{referenceCase{"repeated signature header", repeated, body}, receiver.ErrInvalidSignatureHeader},
		{referenceCase{"ID with a space", hdr("msg 1", now, sign("msg 1", now, body)), body}, receiver.ErrInvalidID},
	}
	for _, c := range refused {
		err := receiver.Verify(c.header, c.body, []receiver.Key{key})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: receiver returned %v, want %v", c.name, err, c.want)
		}
	}
	// Whatever the receiver accepts, the reference library accepts. The
	// converse does not hold by design: the receiver is stricter about
	// timestamp forms, repeated headers and ID characters.
	var all []referenceCase
	all = append(all, accepted...)
	for _, c := range refused {
		all = append(all, c.referenceCase)
	}
	for _, c := range all {
		if receiver.Verify(c.header, c.body, []receiver.Key{key}) == nil {
			if err := wh.Verify(c.body, c.header); err != nil {
				t.Errorf("%s: receiver accepts, reference library refuses: %v", c.name, err)
			}
		}
	}
}

func TestReferenceLibrarySignsForMiddleware(t *testing.T) {
	secret := generate(t, keys.HMACSHA256).Encoded()
	wh, _ := standardwebhooks.NewWebhook(secret)
	key, _ := receiver.ParseKey(secret)
	next := &capture{}
	srv := httptest.NewServer(receiver.Middleware(next, receiver.MiddlewareOptions{Keys: receiver.StaticKeys{key}, Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	body := `{"type":"invoice.paid","timestamp":"2026-05-04T10:29:58Z","data":{"id":"in_1"}}`
	now := time.Now()
	sig, _ := wh.Sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, []byte(body))
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
	req.Header.Set("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("answer %d %s", resp.StatusCode, b)
	}
	if e := next.all(); len(e) != 1 || e[0].Type != "invoice.paid" || string(e[0].Data) != `{"id":"in_1"}` {
		t.Fatalf("events %+v", e)
	}
}
