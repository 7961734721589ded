package dispatcher

import (
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/keys"
	"github.com/hookline/hookline/internal/queue"
)

func TestSigningKeys(t *testing.T) {
	current, err := keys.Generate(keys.HMACSHA256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	previous, err := keys.Generate(keys.Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	secret := func(prev string, expires time.Time) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "signing", Annotations: map[string]string{}},
			Data: map[string][]byte{hooklinev1.SecretKeySigningKey: []byte(current.Encoded() + "\n")}}
		if prev != "" {
			s.Data[hooklinev1.SecretKeyPreviousSigningKey] = []byte(prev)
		}
		if !expires.IsZero() {
			s.Annotations[hooklinev1.AnnotationPreviousKeyExpiresAt] = expires.Format(time.RFC3339)
		}
		return s
	}
	tests := []struct {
		name    string
		secret  *corev1.Secret
		wantIDs []string
		wantErr string
	}{
		{"current only", secret("", time.Time{}), []string{current.ID()}, ""},
		{"previous inside its overlap", secret(previous.Encoded(), now.Add(time.Minute)), []string{current.ID(), previous.ID()}, ""},
		{"previous past its overlap", secret(previous.Encoded(), now), []string{current.ID()}, ""},
		{"previous without an expiry still signs", secret(previous.Encoded(), time.Time{}), []string{current.ID(), previous.ID()}, ""},
		{"no current key", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "signing"}}, nil, `secret signing has no key "signing-key"`},
		{"garbled current key", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "signing"},
			Data: map[string][]byte{hooklinev1.SecretKeySigningKey: []byte("whsec_%%%secret%%%")}}, nil, `secret signing, key "signing-key"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signingKeys(tt.secret, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret%%%") {
					t.Errorf("the error quotes key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, k := range got {
				ids = append(ids, k.ID())
			}
			if strings.Join(ids, ",") != strings.Join(tt.wantIDs, ",") {
				t.Errorf("keys %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

func TestInstanceLeaseName(t *testing.T) {
	for in, want := range map[string]string{
		"default-dispatcher-0": "default-instance-default-dispatcher-0",
		"My.Laptop.local":      "default-instance-my-laptop-local",
		"--odd__name--":        "default-instance-odd-name",
	} {
		if got := InstanceLeaseName("default", in); got != want {
			t.Errorf("InstanceLeaseName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFilterInput(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	in := filterInput(queueEvent("e1", "order.created", at, `{"total":42,"tags":["a"]}`))
	if in["id"] != "e1" || in["type"] != "order.created" || in["time"] != at {
		t.Errorf("input %v", in)
	}
	data, ok := in["data"].(map[string]any)
	if !ok || data["total"] != float64(42) {
		t.Errorf("data %#v", in["data"])
	}
}

func queueEvent(id, typ string, at time.Time, data string) queue.Event {
	return queue.Event{ID: id, Type: typ, Time: at, Data: json.RawMessage(data)}
}
