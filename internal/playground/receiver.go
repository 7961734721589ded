package playground

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// KeySource returns the keys ("whsec_..." strings) a delivery may be signed
// with: the current one and, during a rotation's overlap, the previous one.
type KeySource func(ctx context.Context) ([]string, error)

// SecretKeys reads the keys from the Secret namespace/name, which a
// WebhookSecret fills, on every call, so a receiver follows a rotation
// at once, as one mounting the Secret would.
func SecretKeys(kube kubernetes.Interface, namespace, name string) KeySource {
	return func(ctx context.Context) ([]string, error) {
		s, err := kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading the signing keys from Secret %s/%s: %w", namespace, name, err)
		}
		var keys []string
		for _, k := range []string{hooklinev1.SecretKeySigningKey, hooklinev1.SecretKeyPreviousSigningKey} {
			if v := s.Data[k]; len(v) > 0 {
				keys = append(keys, string(v))
			}
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("secret %s/%s holds no %q key yet", namespace, name, hooklinev1.SecretKeySigningKey)
		}
		return keys, nil
	}
}

// maxDeliveryBytes caps what the demo receiver reads of a request body.
const maxDeliveryBytes = 1 << 20

// Receiver is the playground's demo endpoint. It serves
//
//   - POST /hooks/{subscription}: checks the Standard Webhooks signature
//     with the keys of its KeySource and the library a receiver would use,
//     prints "✓ verified <type> id=<webhook-id> from subscription
//     <subscription>" and answers 204, or prints why not and answers 401;
//   - POST /fail/{subscription}: always answers 500, printing each attempt,
//     so the subscription pointed at it turns unhealthy.
//
// The subscription's name is taken from the path because each sample
// subscription points at its own path.
type Receiver struct {
	keys KeySource
	out  io.Writer
	mux  *http.ServeMux

	mu       sync.Mutex
	attempts map[string]int
}

// NewReceiver returns a Receiver verifying with keys and printing one line
// per request to out; each line is a single Write, so out may be shared
// by goroutines if its Write is safe for that.
func NewReceiver(keys KeySource, out io.Writer) *Receiver {
	r := &Receiver{keys: keys, out: out, mux: http.NewServeMux(), attempts: map[string]int{}}
	r.mux.HandleFunc("POST /hooks/{subscription}", r.verify)
	r.mux.HandleFunc("POST /fail/{subscription}", r.fail)
	return r
}

// ServeHTTP routes a request to the verifying or the failing endpoint.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mux.ServeHTTP(w, req)
}

func (r *Receiver) verify(w http.ResponseWriter, req *http.Request) {
	sub := printable(req.PathValue("subscription"))
	id := printable(req.Header.Get(standardwebhooks.HeaderWebhookID))
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxDeliveryBytes))
	if err != nil {
		r.printf("✗ could not read delivery id=%s for subscription %s: %v\n", id, sub, err)
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	keys, err := r.keys(req.Context())
	if err != nil {
		r.printf("✗ could not verify delivery id=%s for subscription %s: %v\n", id, sub, err)
		http.Error(w, "no keys to verify with", http.StatusServiceUnavailable)
		return
	}
	if err := verifyAny(keys, body, req.Header); err != nil {
		r.printf("✗ rejected delivery id=%s for subscription %s: %v\n", id, sub, err)
		http.Error(w, "signature does not verify", http.StatusUnauthorized)
		return
	}
	r.printf("✓ verified %s id=%s from subscription %s\n", eventType(body), id, sub)
	w.WriteHeader(http.StatusNoContent)
}

func (r *Receiver) fail(w http.ResponseWriter, req *http.Request) {
	sub := printable(req.PathValue("subscription"))
	id := printable(req.Header.Get(standardwebhooks.HeaderWebhookID))
	body, _ := io.ReadAll(http.MaxBytesReader(w, req.Body, maxDeliveryBytes))
	r.mu.Lock()
	r.attempts[id]++
	attempt := r.attempts[id]
	r.mu.Unlock()
	r.printf("✗ answered 500 to %s id=%s for subscription %s (attempt %d)\n", eventType(body), id, sub, attempt)
	http.Error(w, "this endpoint always fails", http.StatusInternalServerError)
}

func (r *Receiver) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(r.out, format, args...)
}

// verifyAny checks the delivery against each key in turn, as a receiver
// must during a rotation.
func verifyAny(keys []string, body []byte, header http.Header) error {
	var errs []error
	for _, k := range keys {
		wh, err := standardwebhooks.NewWebhook(k)
		if err != nil {
			// The library's message names no key material, but say
			// only which key failed to decode.
			errs = append(errs, errors.New("a signing key in the Secret is not valid base64"))
			continue
		}
		if err := wh.Verify(body, header); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	if len(errs) == 0 {
		return errors.New("no signing key")
	}
	// Every key gives the same reason unless a key is malformed.
	return errs[0]
}

// eventType is the "type" of a delivery body, or "?" when it has none.
func eventType(body []byte) string {
	var event struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &event) != nil || event.Type == "" {
		return "?"
	}
	return printable(event.Type)
}
