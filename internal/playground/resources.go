package playground

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// Names of what the playground creates.
const (
	// OperatorNamespace holds the manager's ServiceAccount and the
	// WebhookDispatcher "default", as a Helm install does.
	OperatorNamespace = "hookline-system"
	// DispatcherName is the WebhookDispatcher the dispatcher process serves.
	DispatcherName = "default"
	// DemoNamespace holds the sample secret, subscriptions and producer.
	DemoNamespace = "demo"
	// SigningSecretName names the sample WebhookSecret and the Secret its
	// keys are written to.
	SigningSecretName = "demo-signing"
	// ProducerName names the ServiceAccount allowed to publish in
	// DemoNamespace, and its Role and RoleBinding.
	ProducerName = "demo-producer"
	// OperatorName names the ServiceAccount the README's kubectl hookline
	// examples replay and test-deliver as, and its Role and RoleBinding.
	OperatorName = "demo-operator"
	// OrdersSubscription delivers to the verifying receiver.
	OrdersSubscription = "orders"
	// FlakySubscription delivers to an endpoint that always fails.
	FlakySubscription = "flaky"
	// ProducerAudience is the audience the ingest API requires of tokens.
	ProducerAudience = "hookline"
)

// Dispatcher is the WebhookDispatcher "default". It admits every namespace,
// as the Helm chart's does, and its egress policy lets deliveries reach
// the receiver on the loopback address over plain HTTP, which the default
// policy refuses.
func Dispatcher() *hooklinev1.WebhookDispatcher {
	return &hooklinev1.WebhookDispatcher{
		ObjectMeta: metav1.ObjectMeta{Name: DispatcherName, Namespace: OperatorNamespace},
		Spec: hooklinev1.WebhookDispatcherSpec{
			AllowedNamespaces: hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromAll},
			Egress: hooklinev1.EgressPolicy{
				AllowPlainHTTP: true,
				AllowedCIDRs:   []string{"127.0.0.0/8"},
			},
		},
	}
}

// SigningSecret is the WebhookSecret both subscriptions sign with.
func SigningSecret() *hooklinev1.WebhookSecret {
	return &hooklinev1.WebhookSecret{
		ObjectMeta: metav1.ObjectMeta{Name: SigningSecretName, Namespace: DemoNamespace},
		Spec:       hooklinev1.WebhookSecretSpec{Algorithm: hooklinev1.AlgorithmHMACSHA256},
	}
}

// Subscriptions are the sample WebhookSubscriptions: "orders" delivers
// order events to the verifying receiver at receiverURL, "flaky" delivers
// order.created to its always-failing endpoint with a short retry policy
// (three attempts within about a second), so that it turns unhealthy within
// seconds.
func Subscriptions(receiverURL string) []*hooklinev1.WebhookSubscription {
	sub := func(name, url string, types []string, retry hooklinev1.RetryPolicy) *hooklinev1.WebhookSubscription {
		return &hooklinev1.WebhookSubscription{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: DemoNamespace},
			Spec: hooklinev1.WebhookSubscriptionSpec{
				URL:           url,
				EventTypes:    types,
				DispatcherRef: &hooklinev1.DispatcherReference{Name: DispatcherName, Namespace: OperatorNamespace},
				Signing:       hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: SigningSecretName}},
				Delivery:      hooklinev1.DeliveryPolicy{Retry: retry},
			},
		}
	}
	return []*hooklinev1.WebhookSubscription{
		sub(OrdersSubscription, receiverURL+"/hooks/"+OrdersSubscription, []string{"order.*"}, hooklinev1.RetryPolicy{}),
		sub(FlakySubscription, receiverURL+"/fail/"+FlakySubscription, []string{"order.created"}, hooklinev1.RetryPolicy{
			MaxAttempts:    3,
			InitialBackoff: &metav1.Duration{Duration: 200 * time.Millisecond},
			MaxBackoff:     &metav1.Duration{Duration: time.Second},
		}),
	}
}

// Producer is the ServiceAccount that publishes the demo events, with a
// Role allowing it to create webhookevents in DemoNamespace (what the
// ingest API's SubjectAccessReview asks) and the RoleBinding granting it.
func Producer() (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	return serviceAccount(ProducerName, rbacv1.PolicyRule{
		APIGroups: []string{hooklinev1.GroupVersion.Group},
		Resources: []string{"webhookevents"},
		Verbs:     []string{"create"},
	})
}

// Operator is the ServiceAccount that kubectl hookline's replay and test
// deliveries run as in the README's examples: the ingest API asks update
// on the subscription for a replay, and create on webhookevents for a test
// delivery.
func Operator() (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	return serviceAccount(OperatorName,
		rbacv1.PolicyRule{
			APIGroups: []string{hooklinev1.GroupVersion.Group},
			Resources: []string{"webhookevents"},
			Verbs:     []string{"create"},
		},
		rbacv1.PolicyRule{
			APIGroups: []string{hooklinev1.GroupVersion.Group},
			Resources: []string{"webhooksubscriptions"},
			Verbs:     []string{"update"},
		})
}

// serviceAccount is a ServiceAccount of DemoNamespace named name, with a
// Role of the same name holding rules and the RoleBinding granting it.
func serviceAccount(name string, rules ...rbacv1.PolicyRule) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	meta := metav1.ObjectMeta{Name: name, Namespace: DemoNamespace}
	return &corev1.ServiceAccount{ObjectMeta: meta},
		&rbacv1.Role{ObjectMeta: meta, Rules: rules},
		&rbacv1.RoleBinding{ObjectMeta: meta,
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: DemoNamespace}},
		}
}

// Event is one event as producers publish it.
type Event struct {
	ID   string `json:"id,omitempty"`
	Type string `json:"type"`
	Data any    `json:"data"`
}

// DemoEvents are the events published once the playground is up: all
// three reach "orders", the two order.created reach "flaky" too.
func DemoEvents() []Event {
	return []Event{
		{ID: "order-1001", Type: "order.created", Data: map[string]any{"order": 1001, "total": 42}},
		{ID: "order-1002", Type: "order.created", Data: map[string]any{"order": 1002, "total": 250}},
		{ID: "order-1001-paid", Type: "order.paid", Data: map[string]any{"order": 1001}},
	}
}

// Publish POSTs event to the ingest API at ingestURL in namespace ns with
// the bearer token, and returns the id the API answers with. Anything but
// 202 Accepted is an error carrying the API's message.
func Publish(ctx context.Context, ingestURL, token, ns string, event Event) (string, error) {
	body, err := json.Marshal(event)
	if err != nil {
		return "", fmt.Errorf("encoding the event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ingestURL+"/v1/namespaces/"+ns+"/events", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("building the publish request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("publishing %s: %w", event.Type, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	if err != nil {
		return "", fmt.Errorf("reading the answer to publishing %s: %w", event.Type, err)
	}
	var answer struct{ ID, Message string }
	_ = json.Unmarshal(raw, &answer)
	if resp.StatusCode != http.StatusAccepted {
		msg := answer.Message
		if msg == "" {
			msg = string(bytes.TrimSpace(raw))
		}
		return "", fmt.Errorf("publishing %s: %s: %s", event.Type, resp.Status, printable(msg))
	}
	if answer.ID == "" {
		return "", fmt.Errorf("publishing %s: the answer names no id: %s", event.Type, printable(string(raw)))
	}
	return answer.ID, nil
}

// ReadManifests decodes every object of the YAML files matching pattern
// (relative to root), skipping kustomization.yaml.
func ReadManifests(root, pattern string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(root, pattern))
	if err != nil {
		return nil, fmt.Errorf("matching %s: %w", pattern, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no file matches %s", pattern)
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading manifests: %w", err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("decoding %s: %w", f, err)
			}
			if len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
	}
	return objs, nil
}
