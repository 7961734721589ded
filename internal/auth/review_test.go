package auth_test

import (
	"errors"
	"fmt"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/hookline/hookline/internal/auth"
)

// setupEditor adds, in the producer's allowed namespace, a ServiceAccount
// that may update the WebhookSubscription "orders" and nothing else, and
// returns its username and a token for audience hookline.
func setupEditor(t *testing.T, p producer) (username, token string) {
	t.Helper()
	ctx := t.Context()
	admin, err := kubernetes.NewForConfig(adminConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(p.allowed).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "editor"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().Roles(p.allowed).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-editor"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups:     []string{"hookline.dev"},
			Resources:     []string{"webhooksubscriptions"},
			ResourceNames: []string{"orders"},
			Verbs:         []string{"get", "update"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(p.allowed).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-editor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "orders-editor"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "editor", Namespace: p.allowed}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := admin.CoreV1().ServiceAccounts(p.allowed).CreateToken(ctx, "editor", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{"hookline"}, ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return "system:serviceaccount:" + p.allowed + ":editor", tr.Status.Token
}

func TestReviewReplay(t *testing.T) {
	p := setupProducer(t)
	editorName, editor := setupEditor(t, p)
	client, _ := countingClient(t)
	r := auth.New(client, auth.Options{})

	tests := []struct {
		name    string
		token   string
		attrs   auth.Attributes
		wantErr string // "" for allowed
	}{
		{name: "editor replays the subscription it may update", token: editor, attrs: auth.ReplayAttributes(p.allowed, "orders")},
		{name: "editor may not replay another subscription", token: editor, attrs: auth.ReplayAttributes(p.allowed, "invoices"),
			wantErr: fmt.Sprintf(`user %q may not update webhooksubscriptions.hookline.dev "invoices" in namespace %q: forbidden`, editorName, p.allowed)},
		{name: "editor may not replay in another namespace", token: editor, attrs: auth.ReplayAttributes(p.other, "orders"),
			wantErr: fmt.Sprintf(`user %q may not update webhooksubscriptions.hookline.dev "orders" in namespace %q: forbidden`, editorName, p.other)},
		{name: "editor may not publish", token: editor, attrs: auth.PublishAttributes(p.allowed),
			wantErr: fmt.Sprintf(`user %q may not create webhookevents.hookline.dev in namespace %q: forbidden`, editorName, p.allowed)},
		{name: "producer may publish", token: p.token, attrs: auth.PublishAttributes(p.allowed)},
		{name: "producer may not replay", token: p.token, attrs: auth.ReplayAttributes(p.allowed, "orders"),
			wantErr: fmt.Sprintf(`user %q may not update webhooksubscriptions.hookline.dev "orders" in namespace %q: forbidden`, p.username, p.allowed)},
		{name: "token for another audience", token: p.otherAudience, attrs: auth.ReplayAttributes(p.allowed, "orders"),
			wantErr: `checking the bearer token: token is not valid for audience "hookline": unauthenticated`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Review(t.Context(), tt.token, tt.attrs)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Review() = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Review() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestReviewCachesByAttributes: a cached decision answers only for the
// same attributes; publishing allowed in a namespace says nothing about
// replaying a subscription there.
func TestReviewCachesByAttributes(t *testing.T) {
	p := setupProducer(t)
	_, editor := setupEditor(t, p)
	client, counter := countingClient(t)
	r := auth.New(client, auth.Options{})
	ctx := t.Context()

	steps := []struct {
		name          string
		token         string
		attrs         auth.Attributes
		want          error
		accessReviews int64
	}{
		{name: "publish, cold", token: p.token, attrs: auth.PublishAttributes(p.allowed), accessReviews: 1},
		{name: "publish, cached", token: p.token, attrs: auth.PublishAttributes(p.allowed)},
		{name: "replay by the same token asks again", token: p.token, attrs: auth.ReplayAttributes(p.allowed, "orders"), want: auth.ErrForbidden, accessReviews: 1},
		{name: "replay denial cached", token: p.token, attrs: auth.ReplayAttributes(p.allowed, "orders"), want: auth.ErrForbidden},
		{name: "editor replays orders", token: editor, attrs: auth.ReplayAttributes(p.allowed, "orders"), accessReviews: 1},
		{name: "another name asks again", token: editor, attrs: auth.ReplayAttributes(p.allowed, "invoices"), want: auth.ErrForbidden, accessReviews: 1},
		{name: "another verb asks again", token: editor,
			attrs: auth.Attributes{Verb: "delete", Group: auth.Group, Resource: auth.SubscriptionResource, Name: "orders", Namespace: p.allowed},
			want:  auth.ErrForbidden, accessReviews: 1},
		{name: "editor's replay still cached", token: editor, attrs: auth.ReplayAttributes(p.allowed, "orders")},
	}
	for _, s := range steps {
		_, ar0 := counter.counts()
		err := r.Review(ctx, s.token, s.attrs)
		if (s.want == nil && err != nil) || !errors.Is(err, s.want) {
			t.Fatalf("%s: Review() = %v, want %v", s.name, err, s.want)
		}
		if _, ar1 := counter.counts(); ar1-ar0 != s.accessReviews {
			t.Fatalf("%s: made %d SubjectAccessReviews, want %d", s.name, ar1-ar0, s.accessReviews)
		}
	}
}

func TestReviewRefusesIncompleteAttributes(t *testing.T) {
	client, counter := countingClient(t)
	r := auth.New(client, auth.Options{})
	err := r.Review(t.Context(), "any-token", auth.Attributes{Group: auth.Group, Namespace: "default"})
	if err == nil || errors.Is(err, auth.ErrForbidden) || errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("Review() without verb and resource = %v, want a plain error", err)
	}
	if tr, ar := counter.counts(); tr != 0 || ar != 0 {
		t.Errorf("made %d TokenReviews and %d SubjectAccessReviews, want none", tr, ar)
	}
}

func TestAttributesString(t *testing.T) {
	tests := []struct {
		attrs auth.Attributes
		want  string
	}{
		{auth.PublishAttributes("shop"), `create webhookevents.hookline.dev in namespace "shop"`},
		{auth.ReplayAttributes("shop", "orders"), `update webhooksubscriptions.hookline.dev "orders" in namespace "shop"`},
		{auth.Attributes{Verb: "list", Resource: "namespaces"}, `list namespaces`},
	}
	for _, tt := range tests {
		if got := tt.attrs.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.attrs, got, tt.want)
		}
	}
}
