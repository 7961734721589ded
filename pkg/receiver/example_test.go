package receiver_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hookline/hookline/pkg/receiver"
)

// The Standard Webhooks specification's example delivery.
const (
	exampleSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	exampleID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	exampleTimestamp = "1614265330"
	exampleSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	exampleBody      = `{"test": 2432232314}`
)

func ExampleParseKey() {
	key, err := receiver.ParseKey(exampleSecret)
	if err != nil {
		log.Fatal(err)
	}
	// Printing a key shows its ID, never the secret.
	fmt.Println(key.Algorithm())
	fmt.Printf("%v\n", key)
	// Output:
	// HMAC-SHA256
	// HMAC-SHA256 key k-f74e1720b7614881
}

func ExampleVerifier_Verify() {
	key, err := receiver.ParseKey(exampleSecret)
	if err != nil {
		log.Fatal(err)
	}
	header := http.Header{}
	header.Set("webhook-id", exampleID)
	header.Set("webhook-timestamp", exampleTimestamp)
	header.Set("webhook-signature", exampleSignature)

	// The example was signed in 2021; a real receiver leaves Now nil.
	v := receiver.Verifier{Now: func() time.Time { return time.Unix(1614265330, 0) }}
	fmt.Println(v.Verify(header, []byte(exampleBody), []receiver.Key{key}))

	err = v.Verify(header, []byte(`{"test": 1}`), []receiver.Key{key})
	fmt.Println(errors.Is(err, receiver.ErrNoMatchingSignature))

	err = receiver.Verify(header, []byte(exampleBody), []receiver.Key{key})
	fmt.Println(errors.Is(err, receiver.ErrTooOld))
	// Output:
	// <nil>
	// true
	// true
}

func ExampleMiddleware() {
	key, err := receiver.ParseKey(exampleSecret)
	if err != nil {
		log.Fatal(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		event, _ := receiver.EventFrom(r.Context())
		fmt.Printf("handling %s %s: %s\n", event.Type, event.ID, event.Data)
	})
	srv := httptest.NewServer(receiver.Middleware(handler, receiver.MiddlewareOptions{
		Keys:   receiver.StaticKeys{key},
		Logger: slog.New(slog.DiscardHandler),
	}))
	defer srv.Close()

	body := `{"type":"order.created","timestamp":"2026-05-04T10:29:58Z","data":{"orderId":"o-1001"}}`
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	good := sign(exampleSecret, "evt_1", ts, body)
	for _, sig := range []string{good, good, "v1,AAAA"} {
		fmt.Println(post(srv.URL, "evt_1", ts, sig, body))
	}
	// Output:
	// handling order.created evt_1: {"orderId":"o-1001"}
	// 200
	// 200 {"message":"event already processed","status":"duplicate"}
	// 401 {"error":"no_matching_signature","message":"verify webhook: no matching signature: 1 signature entries checked against 1 keys"}
}

// sign computes a Standard Webhooks signature as a sender would.
func sign(secret, id, timestamp, body string) string {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	_, _ = io.WriteString(mac, id+"."+timestamp+"."+body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func post(url, id, timestamp, sig, body string) string {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", timestamp)
	req.Header.Set("webhook-signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(strconv.Itoa(resp.StatusCode) + " " + string(answer))
}

func ExampleNewKeySource() {
	// In a Pod, dir is where the Secret Hookline maintains is mounted,
	// such as /etc/webhook-keys; the kubelet updates it after a rotation.
	dir, err := os.MkdirTemp("", "webhook-keys")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := os.WriteFile(filepath.Join(dir, receiver.SigningKeyFile), []byte(exampleSecret+"\n"), 0o600); err != nil {
		log.Fatal(err)
	}

	keys, err := receiver.NewKeySource(dir, receiver.KeySourceOptions{})
	if err != nil {
		log.Fatal(err)
	}
	current, _ := keys.Keys()
	fmt.Println(current)

	// Serve with receiver.Middleware(handler, receiver.MiddlewareOptions{Keys: keys}).
	// Output:
	// [HMAC-SHA256 key k-f74e1720b7614881]
}
