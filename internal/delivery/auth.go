package delivery

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"k8s.io/utils/clock"
)

// Authenticator adds credentials to a delivery request.
type Authenticator interface {
	// Authenticate adds credentials to req, which is otherwise complete;
	// it must not change the headers the Sender sets itself. It runs
	// within the attempt's deadline (ctx). Its errors never hold the
	// secret: they become a Result's Message.
	Authenticate(ctx context.Context, req *http.Request) error
	// Refresh is called once after a 401: a token-based Authenticator
	// drops its cached token so the next Authenticate fetches a new one.
	// It reports whether a retry could help.
	Refresh() bool
}

// BasicAuth sends HTTP Basic credentials (RFC 7617).
type BasicAuth struct {
	Username string
	Password string
}

// Authenticate sets the Authorization header.
func (b BasicAuth) Authenticate(_ context.Context, req *http.Request) error {
	if strings.ContainsRune(b.Username, ':') {
		// RFC 7617: the first colon separates the user-id from the
		// password, so the receiver would split this one wrongly.
		return errors.New("basic auth user name must not contain a colon")
	}
	req.SetBasicAuth(b.Username, b.Password)
	return nil
}

// Refresh reports false: the same password would be refused again.
func (BasicAuth) Refresh() bool { return false }

func (b BasicAuth) secretValues() []string {
	// An endpoint may echo the decoded password, or the encoded pair
	// without its scheme.
	return []string{b.Password, base64.StdEncoding.EncodeToString([]byte(b.Username + ":" + b.Password))}
}

// OAuth2Config configures the OAuth 2.0 client credentials grant (RFC 6749
// section 4.4).
type OAuth2Config struct {
	// TokenURL is the token endpoint. It may carry secrets in its query,
	// so it never appears in an error.
	TokenURL string
	// ClientID identifies the client to the token endpoint.
	ClientID string
	// ClientSecret authenticates the client to the token endpoint.
	ClientSecret string
	// Scopes are requested as the scope parameter; empty sends none.
	Scopes []string
	// EndpointParams are added to the token request, such as an
	// audience.
	EndpointParams url.Values
	// Clock decides when a cached token is due for replacement; nil means
	// the real clock.
	Clock clock.PassiveClock
}

// maxTokenMargin caps how long before its expiry a cached token is
// replaced.
const maxTokenMargin = 30 * time.Second

// tokenMargin is how long before its expiry a token with the given
// lifetime is replaced: early enough that a request never leaves with a
// token that lapses in flight, yet no more than a tenth of the lifetime,
// so that short-lived tokens are still reused.
func tokenMargin(lifetime time.Duration) time.Duration {
	return max(0, min(maxTokenMargin, lifetime/10))
}

// OAuth2 is an Authenticator that sends an access token obtained with the
// client credentials grant. Tokens are cached until shortly before they
// expire (see tokenMargin) and fetched one at a time, however many
// deliveries want one. It is safe for concurrent use.
type OAuth2 struct {
	conf   *clientcredentials.Config
	client *http.Client
	clock  clock.PassiveClock
	// fetching admits one caller at a time to check and fetch the token;
	// a channel rather than a mutex so waiters can give up with their
	// context.
	fetching chan struct{}

	mu      sync.Mutex
	token   *oauth2.Token
	renewAt time.Time // by clock; zero means the token does not expire
}

// NewOAuth2 returns an Authenticator for cfg whose token requests go
// through client, which should be the deliveries' (egress-guarded) client;
// nil means a client from NewClient with default options.
func NewOAuth2(cfg OAuth2Config, client *http.Client) *OAuth2 {
	if client == nil {
		client = defaultClient()
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &OAuth2{
		conf: &clientcredentials.Config{
			ClientID:       cfg.ClientID,
			ClientSecret:   cfg.ClientSecret,
			TokenURL:       cfg.TokenURL,
			Scopes:         cfg.Scopes,
			EndpointParams: cfg.EndpointParams,
		},
		client:   client,
		clock:    clk,
		fetching: make(chan struct{}, 1),
	}
}

// Authenticate sets Authorization to the cached token, fetching one first
// if there is none or it is due for replacement.
func (o *OAuth2) Authenticate(ctx context.Context, req *http.Request) error {
	tok, err := o.current(ctx)
	if err != nil {
		return err
	}
	tok.SetAuthHeader(req)
	return nil
}

// Refresh drops the cached token, so that the next Authenticate fetches a
// new one, and reports true.
func (o *OAuth2) Refresh() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.token = nil
	return true
}

func (o *OAuth2) secretValues() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := []string{o.conf.ClientSecret}
	if o.token != nil {
		out = append(out, o.token.AccessToken)
	}
	return out
}

func (o *OAuth2) current(ctx context.Context) (*oauth2.Token, error) {
	select {
	case o.fetching <- struct{}{}:
	case <-ctx.Done():
		return nil, &authError{msg: "fetching an OAuth2 token: gave up waiting for another fetch", err: ctx.Err()}
	}
	defer func() { <-o.fetching }()

	o.mu.Lock()
	tok, renewAt := o.token, o.renewAt
	o.mu.Unlock()
	if tok != nil && (renewAt.IsZero() || o.clock.Now().Before(renewAt)) {
		return tok, nil
	}

	fetchedAt := o.clock.Now()
	tok, err := o.conf.Token(context.WithValue(ctx, oauth2.HTTPClient, o.client))
	if err != nil {
		return nil, o.fetchError(err)
	}
	if !validHeaderValue(tok.AccessToken) || !validHeaderValue(tok.Type()) {
		return nil, errors.New("fetching an OAuth2 token: the token endpoint returned an unusable token")
	}
	renewAt = time.Time{}
	if !tok.Expiry.IsZero() {
		// The library stamps Expiry by the real clock when the answer
		// arrives; only the lifetime it implies is carried over to ours.
		lifetime := time.Until(tok.Expiry)
		renewAt = fetchedAt.Add(lifetime - tokenMargin(lifetime))
	}
	o.mu.Lock()
	o.token, o.renewAt = tok, renewAt
	o.mu.Unlock()
	return tok, nil
}

// fetchError describes a failed token request without the token URL (the
// HTTP client's errors quote it), the client secret, or the endpoint's
// error description, which is free text.
func (o *OAuth2) fetchError(err error) error {
	const prefix = "fetching an OAuth2 token: "
	var (
		retrieveErr *oauth2.RetrieveError
		urlErr      *url.Error
	)
	var detail string
	switch {
	case errors.As(err, &retrieveErr):
		detail = "token endpoint answered"
		if retrieveErr.Response != nil {
			detail += fmt.Sprintf(" HTTP %d", retrieveErr.Response.StatusCode)
		}
		if code := retrieveErr.ErrorCode; code != "" && len(code) <= 64 && isErrorCode(code) {
			detail += " (" + code + ")"
		}
	case errors.As(err, &urlErr):
		var class Class
		class, detail = classify(urlErr, 0, clientCertOf(o.client))
		if class == ClassTimeout {
			detail = "no answer from the token endpoint in time"
		}
	default:
		// The library's own errors: an unparsable answer or one without a
		// token. Their text is fixed apart from a parser's few bytes.
		detail = err.Error()
	}
	msg := truncate(redact(prefix+detail, []string{o.conf.ClientSecret}), maxMessageBytes)
	return &authError{msg: msg, err: err}
}

// isErrorCode reports whether s has the characters RFC 6749 allows in an
// error code, less the space and quotes, so it can be shown as is.
func isErrorCode(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// authError is a credentials failure with a message fit for a Result; it
// unwraps to the cause so that a refused egress or a canceled context can
// still be told apart.
type authError struct {
	msg string
	err error
}

func (e *authError) Error() string { return e.msg }

func (e *authError) Unwrap() error { return e.err }
