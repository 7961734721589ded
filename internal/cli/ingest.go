package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/pflag"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/hookline/hookline/internal/version"
)

// defaultDispatcher is the WebhookDispatcher the Helm chart installs.
const defaultDispatcher = "hookline-system/default"

// ingestAudience is the audience the dispatcher's TokenReview asks for.
const ingestAudience = "hookline"

// requestedTokenSeconds is the lifetime of a token requested for
// --service-account: enough for one command, short if it leaks.
const requestedTokenSeconds = 600

// maxAnswerBytes caps what is read of an ingest API answer.
const maxAnswerBytes = 1 << 20

// ingestFlags are the connection and credential options of the commands
// that call a dispatcher's ingest API.
type ingestFlags struct {
	url            string
	dispatcher     string
	tokenFile      string
	serviceAccount string
}

func (f *ingestFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "ingest-url", "", "URL of the dispatcher's ingest API, such as http://default-dispatcher.hookline-system:8080 in the cluster or http://127.0.0.1:8080 for a local dispatcher; without it, a port-forward to a Ready pod of --dispatcher is opened, or, for a dispatcher running outside pods (as in make dev), the URL its instance announces is used")
	fs.StringVar(&f.dispatcher, "dispatcher", defaultDispatcher, "WebhookDispatcher NAMESPACE/NAME to port-forward to when --ingest-url is not set (for a subscription: the dispatcher it is attached to)")
	fs.StringVar(&f.tokenFile, "token-file", "", "File holding the bearer token for the ingest API: a ServiceAccount token with audience hookline")
	fs.StringVar(&f.serviceAccount, "service-account", "", "Request a 10-minute token with audience hookline for this ServiceAccount of the namespace, with the kubeconfig's credentials")
}

// ingestClient calls one dispatcher's ingest API with a bearer token.
type ingestClient struct {
	base  string // scheme://host[:port][/prefix], without a trailing slash
	where string // how messages name the API: a URL or a port-forward
	token string
	http  *http.Client
}

// connectIngest finds the address and the credentials: --ingest-url, or a
// port-forward to a Ready pod of the dispatcher named by --dispatcher, else
// by fallback (which may return "" for the default), or, when that
// dispatcher has no pod, the ingest URL one of its instances announces.
// closeFn ends the port-forward, if any.
func (a *app) connectIngest(ctx context.Context, fs *pflag.FlagSet, f *ingestFlags, ns string, fallback func() (string, error)) (c *ingestClient, closeFn func(), err error) {
	var base string
	if f.url != "" {
		u, err := url.Parse(f.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, nil, usageErrorf("--ingest-url %q is not an http:// or https:// URL; for example --ingest-url http://127.0.0.1:8080", f.url)
		}
		base = strings.TrimSuffix(u.String(), "/")
	}
	if base != "" {
		token, err := a.ingestToken(ctx, f, ns, base)
		if err != nil {
			return nil, nil, err
		}
		return &ingestClient{base: base, where: base, token: token, http: &http.Client{}}, func() {}, nil
	}
	ref := f.dispatcher
	if !changed(fs, "dispatcher") && fallback != nil {
		resolved, err := fallback()
		if err != nil {
			return nil, nil, err
		}
		if resolved != "" {
			ref = resolved
		}
	}
	dns, dname, ok := strings.Cut(ref, "/")
	if !ok || dns == "" || dname == "" || strings.Contains(dname, "/") {
		return nil, nil, usageErrorf("--dispatcher %q must be NAMESPACE/NAME, for example %s", ref, defaultDispatcher)
	}
	base, stop, err := a.portForward(ctx, dns, dname)
	if noPod, ok := errors.AsType[*noPodError](err); ok {
		// A dispatcher run as a local process (the playground) has no pod,
		// but may announce where its ingest API is reachable.
		announced, found := a.announcedIngestURL(ctx, dns, dname)
		if !found {
			return nil, nil, noPod
		}
		token, err := a.ingestToken(ctx, f, ns, announced)
		if err != nil {
			return nil, nil, err
		}
		return &ingestClient{base: announced, where: "dispatcher " + ref + " at " + announced, token: token, http: &http.Client{}}, func() {}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	token, err := a.ingestToken(ctx, f, ns, "")
	if err != nil {
		stop()
		return nil, nil, err
	}
	return &ingestClient{base: base, where: "dispatcher " + ref + " (port-forward)", token: token, http: &http.Client{}}, stop, nil
}

// ingestToken picks the bearer token: --token-file, a token requested for
// --service-account, or the kubeconfig's own bearer token. The last only
// goes through a port-forward (direct is empty), to the cluster's own
// dispatcher: a URL given by --ingest-url, or announced on a Lease, could
// be anyone's, and the kubeconfig's token may be worth far more than
// publishing rights.
func (a *app) ingestToken(ctx context.Context, f *ingestFlags, ns, direct string) (string, error) {
	switch {
	case f.tokenFile != "":
		raw, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("reading --token-file: %w", err)
		}
		token := strings.TrimSpace(string(raw))
		if token == "" {
			return "", fmt.Errorf("--token-file %s is empty; put a ServiceAccount token for audience %s in it (kubectl create token NAME --audience %s)", f.tokenFile, ingestAudience, ingestAudience)
		}
		return token, nil
	case f.serviceAccount != "":
		return a.requestToken(ctx, ns, f.serviceAccount)
	}
	if direct != "" {
		return "", fmt.Errorf("no credentials for %s: pass --token-file FILE with a ServiceAccount token for audience %s, or --service-account NAME to request one for a ServiceAccount of namespace %s (the kubeconfig's own token is only sent through a port-forward)", direct, ingestAudience, ns)
	}
	// Without a kubeconfig there is simply no token to take from it.
	if cfg, err := a.restConfig(); err == nil {
		if cfg.BearerToken != "" {
			return cfg.BearerToken, nil
		}
		if cfg.BearerTokenFile != "" {
			if raw, err := os.ReadFile(cfg.BearerTokenFile); err == nil && strings.TrimSpace(string(raw)) != "" {
				return strings.TrimSpace(string(raw)), nil
			}
		}
	}
	return "", fmt.Errorf("no credentials for the ingest API: pass --token-file FILE with a ServiceAccount token for audience %s, or --service-account NAME to request one for a ServiceAccount of namespace %s (the kubeconfig has no bearer token)", ingestAudience, ns)
}

// requestToken asks the TokenRequest API, as the kubeconfig's user, for a
// short-lived token of a ServiceAccount with the ingest audience.
func (a *app) requestToken(ctx context.Context, ns, sa string) (string, error) {
	kube, err := a.kubeClient()
	if err != nil {
		return "", err
	}
	tr, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{ingestAudience},
			ExpirationSeconds: ptr.To[int64](requestedTokenSeconds),
		},
	}, metav1.CreateOptions{})
	switch {
	case err == nil:
		return tr.Status.Token, nil
	case apierrors.IsNotFound(err) && !resourceUnknown(err):
		return "", fmt.Errorf("serviceaccount %s/%s not found; pass an existing one to --service-account (kubectl get serviceaccounts -n %s)", ns, sa, ns)
	case apierrors.IsForbidden(err):
		return "", fmt.Errorf("forbidden: %s; requesting a token for --service-account needs create on serviceaccounts/token in namespace %s, or pass --token-file instead", apiMessage(err), ns)
	default:
		return "", apiError(err, "a token for serviceaccount "+ns+"/"+sa, "check --service-account")
	}
}

// errorAnswer is the JSON error body of the ingest API.
type errorAnswer struct {
	Status  int    `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// post sends payload as JSON to path and returns the status code and body.
func (c *ingestClient) post(ctx context.Context, path string, payload any) (int, []byte, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return 0, nil, fmt.Errorf("encoding the request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("preparing the request to %s: %w", c.where, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("User-Agent", "kubectl-hookline/"+version.Version)
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, nil, timeoutErrorf("no answer from %s in time; the dispatcher, or the endpoint of a test delivery, is slow: retry, or give send a longer --timeout", c.where)
		}
		// The error names the URL, never the token.
		return 0, nil, fmt.Errorf("cannot reach the ingest API at %s: %v; check --ingest-url, or that the dispatcher runs", c.where, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reading the answer of %s: %w", c.where, err)
	}
	return resp.StatusCode, answer, nil
}

// answerMessage is the message of an ingest API error body, or a short,
// single-line excerpt of a body that is not one.
func answerMessage(body []byte) string {
	var e errorAnswer
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return oneLine(e.Message)
	}
	s := oneLine(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "no details"
	}
	return s
}

// refusal explains an answer other than the expected success, with the
// next step for each kind of refusal.
func (c *ingestClient) refusal(status int, body []byte) error {
	msg := answerMessage(body)
	switch {
	case status == http.StatusUnauthorized:
		return fmt.Errorf("the dispatcher refused the token (%s); pass --token-file with a ServiceAccount token for audience %s, or --service-account NAME", msg, ingestAudience)
	case status == http.StatusForbidden:
		return fmt.Errorf("forbidden (HTTP 403): %s; grant it with a RoleBinding, or use another --token-file or --service-account", msg)
	case status == http.StatusNotFound && strings.HasPrefix(msg, "no such endpoint"):
		return fmt.Errorf("%s does not serve this request (HTTP 404: %s); check that --ingest-url names a Hookline dispatcher's ingest port (8080), and that the dispatcher is recent enough", c.where, msg)
	case status == http.StatusServiceUnavailable:
		return fmt.Errorf("the dispatcher cannot take the request now (HTTP 503: %s); retry later", msg)
	case status >= 400 && status < 500:
		return fmt.Errorf("the dispatcher refused the request (HTTP %d: %s)", status, msg)
	default:
		return fmt.Errorf("unexpected answer from %s: HTTP %d: %s", c.where, status, msg)
	}
}

// subscriptionPath is the ingest API path of an action on a subscription.
func subscriptionPath(ns, name, action string) string {
	return "/v1/namespaces/" + url.PathEscape(ns) + "/subscriptions/" + url.PathEscape(name) + ":" + action
}

// subscriptionDispatcher returns a fallback for connectIngest: the
// dispatcher a subscription is attached to, from its status.
func (a *app) subscriptionDispatcher(ctx context.Context, ns, name string) func() (string, error) {
	return func() (string, error) {
		hl, err := a.hooklineClient()
		if err != nil {
			return "", err
		}
		sub, err := hl.subscription(ctx, ns, name)
		if err != nil {
			return "", apiError(err, "subscription "+ns+"/"+name, "list them with kubectl hookline status -n "+ns)
		}
		return sub.Status.Dispatcher, nil
	}
}
