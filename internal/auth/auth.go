// Package auth decides whether a caller of the ingest API may do what it
// asks: publish events into a namespace, or replay a subscription's dead
// letters. Callers present a Kubernetes ServiceAccount token (or any token
// the API server accepts) bound to the Hookline audience; the token is
// authenticated with a TokenReview and the resulting user is authorised with
// a SubjectAccessReview, so plain RBAC says who may do what: "create" on the
// virtual resource "webhookevents" in group "hookline.dev" allows publishing
// in a namespace, and "update" on a "webhooksubscriptions" object allows
// replaying it, since whoever may edit a subscription may ask for a replay
// declaratively anyway.
//
// Decisions are cached for a short time because a dispatcher may receive
// thousands of requests per second from the same few producers, and each
// uncached decision costs two API requests.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"golang.org/x/sync/singleflight"
)

// Sentinel errors returned by Authorize. Callers test them with errors.Is;
// any other error is transient (the API server could not be asked) and is
// worth retrying.
var (
	// ErrUnauthenticated means the token is not valid for the audience:
	// malformed, expired, revoked, or issued for another audience.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden means the token is valid but its user may not publish
	// events in the namespace.
	ErrForbidden = errors.New("forbidden")
)

// The virtual resource that RBAC rules name to allow publishing. Nothing
// stores objects of this resource; it exists only for authorisation.
const (
	// Group is the API group of the publishing permission.
	Group = "hookline.dev"
	// Resource is the resource of the publishing permission.
	Resource = "webhookevents"
	// Verb is the verb of the publishing permission.
	Verb = "create"
)

// The permission to replay a subscription's dead letters.
const (
	// SubscriptionResource is the resource of WebhookSubscriptions.
	SubscriptionResource = "webhooksubscriptions"
	// ReplayVerb is the verb on a WebhookSubscription that allows
	// replaying it.
	ReplayVerb = "update"
)

// Attributes describe the request a token's user must be allowed, as in a
// SubjectAccessReview's resource attributes.
type Attributes struct {
	// Verb, Group and Resource name the permission; Verb and Resource
	// are required.
	Verb, Group, Resource string
	// Name is the object's name; empty for all objects of the resource.
	Name string
	// Namespace is the object's namespace; empty for cluster scope.
	Namespace string
}

// PublishAttributes is the permission to publish events in namespace.
func PublishAttributes(namespace string) Attributes {
	return Attributes{Verb: Verb, Group: Group, Resource: Resource, Namespace: namespace}
}

// ReplayAttributes is the permission to replay the dead letters of the
// WebhookSubscription namespace/name.
func ReplayAttributes(namespace, name string) Attributes {
	return Attributes{Verb: ReplayVerb, Group: Group, Resource: SubscriptionResource, Name: name, Namespace: namespace}
}

// String describes the permission for messages, e.g. `update
// webhooksubscriptions.hookline.dev "orders" in namespace "shop"`.
func (a Attributes) String() string {
	var b strings.Builder
	b.WriteString(a.Verb + " " + a.Resource)
	if a.Group != "" {
		b.WriteString("." + a.Group)
	}
	if a.Name != "" {
		fmt.Fprintf(&b, " %q", a.Name)
	}
	if a.Namespace != "" {
		fmt.Fprintf(&b, " in namespace %q", a.Namespace)
	}
	return b.String()
}

// key identifies the attributes unambiguously within a cache key: quoting
// keeps separators inside values from joining two different requests.
func (a Attributes) key() string {
	return strings.Join([]string{
		strconv.Quote(a.Verb), strconv.Quote(a.Group), strconv.Quote(a.Resource), strconv.Quote(a.Name), strconv.Quote(a.Namespace),
	}, "/")
}

// Defaults for Options.
const (
	// DefaultAudience is the token audience producers request.
	DefaultAudience = "hookline"
	// DefaultAllowTTL is how long positive decisions are cached.
	DefaultAllowTTL = 10 * time.Second
	// DefaultDenyTTL is how long negative decisions are cached.
	DefaultDenyTTL = 5 * time.Second
	// DefaultCacheSize bounds each decision cache.
	DefaultCacheSize = 4096
)

// Options configure a Reviewer. Zero values select the defaults.
type Options struct {
	// Audience the token must be bound to; DefaultAudience when empty.
	Audience string
	// AllowTTL is how long an authenticated token and an allowed
	// request are remembered; DefaultAllowTTL when zero.
	AllowTTL time.Duration
	// DenyTTL is how long a rejected token or a forbidden request is
	// remembered; DefaultDenyTTL when zero. It is shorter than AllowTTL so
	// that a freshly granted permission takes effect quickly.
	DenyTTL time.Duration
	// CacheSize bounds each of the two decision caches; DefaultCacheSize
	// when zero.
	CacheSize int
	// Clock drives cache expiry; the real clock when nil.
	Clock clock.PassiveClock
}

// Reviewer authorises callers with TokenReview and SubjectAccessReview.
// It is safe for concurrent use.
type Reviewer struct {
	client   kubernetes.Interface
	audience string
	allowTTL time.Duration
	denyTTL  time.Duration

	// Both caches are keyed by the SHA-256 of the token so that the raw
	// token is never kept in memory longer than a request.
	tokens *cache.LRUExpireCache // tokenKey -> tokenDecision
	access *cache.LRUExpireCache // tokenKey + "/" + Attributes.key() -> bool (allowed)

	// group collapses concurrent reviews of the same token (and
	// attributes), so that a burst of requests on a cold cache costs one
	// API request instead of one per request.
	group singleflight.Group
}

type tokenDecision struct {
	authenticated bool
	user          authnv1.UserInfo
}

// New returns a Reviewer that asks the API server through client.
func New(client kubernetes.Interface, opts Options) *Reviewer {
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	if opts.AllowTTL <= 0 {
		opts.AllowTTL = DefaultAllowTTL
	}
	if opts.DenyTTL <= 0 {
		opts.DenyTTL = DefaultDenyTTL
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Reviewer{
		client:   client,
		audience: opts.Audience,
		allowTTL: opts.AllowTTL,
		denyTTL:  opts.DenyTTL,
		tokens:   cache.NewLRUExpireCacheWithClock(opts.CacheSize, opts.Clock),
		access:   cache.NewLRUExpireCacheWithClock(opts.CacheSize, opts.Clock),
	}
}

// Authorize returns nil when token authenticates for the audience and its
// user may create webhookevents in namespace, that is may publish events
// there. It is Review with PublishAttributes(namespace).
func (r *Reviewer) Authorize(ctx context.Context, token, namespace string) error {
	return r.Review(ctx, token, PublishAttributes(namespace))
}

// Review returns nil when token authenticates for the audience and its user
// is allowed attrs. It returns an error wrapping ErrUnauthenticated or
// ErrForbidden for a negative decision, and any other error when the API
// server could not decide; those are not cached. The token never appears in
// a returned error.
func (r *Reviewer) Review(ctx context.Context, token string, attrs Attributes) error {
	if attrs.Verb == "" || attrs.Resource == "" {
		return fmt.Errorf("reviewing access: verb and resource are required, got %q", attrs.String())
	}
	if token == "" {
		return fmt.Errorf("checking the bearer token: empty token: %w", ErrUnauthenticated)
	}
	sum := sha256.Sum256([]byte(token))
	tokenKey := hex.EncodeToString(sum[:])

	decision, err := r.reviewToken(ctx, token, tokenKey)
	if err != nil {
		return err
	}
	if !decision.authenticated {
		return fmt.Errorf("checking the bearer token: token is not valid for audience %q: %w", r.audience, ErrUnauthenticated)
	}

	allowed, err := r.reviewAccess(ctx, decision.user, tokenKey, attrs)
	if err != nil {
		return err
	}
	if !allowed {
		return fmt.Errorf("user %q may not %s: %w", decision.user.Username, attrs, ErrForbidden)
	}
	return nil
}

func (r *Reviewer) reviewToken(ctx context.Context, token, tokenKey string) (tokenDecision, error) {
	if v, ok := r.tokens.Get(tokenKey); ok {
		return v.(tokenDecision), nil
	}
	v, err, _ := r.group.Do("token/"+tokenKey, func() (any, error) {
		// A flight that ended between the Get above and Do has filled
		// the cache; asking again would be a wasted request.
		if v, ok := r.tokens.Get(tokenKey); ok {
			return v, nil
		}
		review := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{
			Token:     token,
			Audiences: []string{r.audience},
		}}
		// The request body carries the token; client-go does not put
		// bodies into errors, so err is safe to return.
		got, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("reviewing the bearer token: %w", err)
		}
		// An audience-agnostic authenticator may accept a token without
		// confirming the audience; the status must name ours, as the
		// TokenReview API asks of its clients.
		d := tokenDecision{
			authenticated: got.Status.Authenticated && slices.Contains(got.Status.Audiences, r.audience),
			user:          got.Status.User,
		}
		ttl := r.allowTTL
		if !d.authenticated {
			d.user = authnv1.UserInfo{}
			ttl = r.denyTTL
		}
		r.tokens.Add(tokenKey, d, ttl)
		return d, nil
	})
	if err != nil {
		return tokenDecision{}, err
	}
	return v.(tokenDecision), nil
}

func (r *Reviewer) reviewAccess(ctx context.Context, user authnv1.UserInfo, tokenKey string, attrs Attributes) (bool, error) {
	key := tokenKey + "/" + attrs.key()
	if v, ok := r.access.Get(key); ok {
		return v.(bool), nil
	}
	v, err, _ := r.group.Do("access/"+key, func() (any, error) {
		if v, ok := r.access.Get(key); ok {
			return v, nil
		}
		var extra map[string]authzv1.ExtraValue
		if len(user.Extra) > 0 {
			extra = make(map[string]authzv1.ExtraValue, len(user.Extra))
			for k, vals := range user.Extra {
				extra[k] = authzv1.ExtraValue(vals)
			}
		}
		review := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: attrs.Namespace,
				Verb:      attrs.Verb,
				Group:     attrs.Group,
				Resource:  attrs.Resource,
				Name:      attrs.Name,
			},
			User:   user.Username,
			Groups: user.Groups,
			UID:    user.UID,
			Extra:  extra,
		}}
		got, err := r.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("reviewing whether user %q may %s: %w", user.Username, attrs, err)
		}
		allowed := got.Status.Allowed && !got.Status.Denied
		ttl := r.allowTTL
		if !allowed {
			ttl = r.denyTTL
		}
		r.access.Add(key, allowed, ttl)
		return allowed, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}
