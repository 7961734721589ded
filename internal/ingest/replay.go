package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hookline/hookline/internal/auth"
)

// replaySuffix ends the last path segment of a replay request,
// POST /v1/namespaces/{namespace}/subscriptions/{name}:replay.
const replaySuffix = ":replay"

// Replayer replays one subscription's dead letters; the dispatcher
// implements it.
type Replayer interface {
	// Replay republishes to the subscription namespace/name its dead
	// letters stored between since and until (inclusive; a zero time
	// leaves that side unbounded) and returns how many it replayed. An
	// error wrapping ErrSubscriptionNotFound means this dispatcher does
	// not serve the subscription.
	Replay(ctx context.Context, namespace, name string, since, until time.Time) (int, error)
}

// ErrSubscriptionNotFound is what a Replayer returns (wrapped) for a
// subscription it does not serve; the caller gets 404.
var ErrSubscriptionNotFound = errors.New("subscription not found")

// replayWindow is a replay request's optional body.
type replayWindow struct {
	Since, Until time.Time
}

type replayedBody struct {
	Replayed int `json:"replayed"`
}

// subscriptionAction serves the actions on one subscription: replay and
// test.
func (h *handler) subscriptionAction(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if name, ok := strings.CutSuffix(action, replaySuffix); ok {
		if h.opts.Replayer == nil {
			writeError(w, http.StatusNotFound, "this dispatcher does not replay dead letters")
			return
		}
		h.replay(w, r, name)
		return
	}
	if name, ok := strings.CutSuffix(action, testSuffix); ok {
		if h.opts.Tester == nil {
			writeError(w, http.StatusNotFound, "this dispatcher does not make test deliveries")
			return
		}
		h.test(w, r, name)
		return
	}
	notFound(w, r)
}

// subscriptionRequest admits a request about the subscription name. It
// checks, in the order that reveals nothing to unauthenticated callers and
// reads no body before the caller is known: method, path, credentials
// (attrs must be allowed), then the body, which is optional but must be
// JSON when a Content-Type is sent.
func (h *handler) subscriptionRequest(w http.ResponseWriter, r *http.Request, name, suffix string,
	attrs func(ns string) auth.Attributes, forbidden func(ns string) string) (ns string, body []byte, ok bool) {
	if !allowPost(w, r) {
		return "", nil, false
	}
	if ns, ok = pathNamespace(w, r); !ok {
		return "", nil, false
	}
	if name == "" {
		writeError(w, http.StatusBadRequest, "name: required before "+suffix)
		return "", nil, false
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("name: %s is not a valid subscription name: %s", echo(name), strings.Join(errs, "; ")))
		return "", nil, false
	}
	if rerr := h.authorize(r, attrs(ns), forbidden(ns)); rerr != nil {
		writeRequestError(w, rerr)
		return "", nil, false
	}
	body, rerr := h.readBody(w, r)
	if rerr != nil {
		writeRequestError(w, rerr)
		return "", nil, false
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if _, rerr := checkContentType(ct, []string{contentTypeJSON}); rerr != nil {
				writeRequestError(w, rerr)
				return "", nil, false
			}
		}
	}
	return ns, body, true
}

// replay replays a subscription's dead letters for whoever may update it.
func (h *handler) replay(w http.ResponseWriter, r *http.Request, name string) {
	ns, body, ok := h.subscriptionRequest(w, r, name, replaySuffix,
		func(ns string) auth.Attributes { return auth.ReplayAttributes(ns, name) },
		func(ns string) string {
			return fmt.Sprintf("not allowed to replay subscription %q in namespace %q: update on webhooksubscriptions.hookline.dev is required", name, ns)
		})
	if !ok {
		return
	}
	var window replayWindow
	if len(body) > 0 {
		var err error
		if window, err = decodeReplayWindow(body); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	n, err := h.opts.Replayer.Replay(r.Context(), ns, name, window.Since, window.Until)
	switch {
	case errors.Is(err, ErrSubscriptionNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("subscription %q in namespace %q is not served by this dispatcher", name, ns))
	case err != nil:
		h.opts.Logger.ErrorContext(r.Context(), "Replaying dead letters failed", "namespace", ns, "subscription", name, "replayed", n, "error", err)
		writeError(w, http.StatusServiceUnavailable, "the replay did not complete, retry later to replay the remaining dead letters")
	default:
		h.opts.Logger.InfoContext(r.Context(), "Replayed dead letters", "namespace", ns, "subscription", name, "replayed", n)
		writeJSON(w, http.StatusOK, replayedBody{Replayed: n})
	}
}

// decodeReplayWindow decodes {"since"?: RFC 3339, "until"?: RFC 3339}; null
// leaves a bound open.
func decodeReplayWindow(data []byte) (replayWindow, error) {
	members, err := readObject(data, "body")
	if err != nil {
		return replayWindow{}, err
	}
	var win replayWindow
	for _, m := range members {
		var dst *time.Time
		switch m.name {
		case "since":
			dst = &win.Since
		case "until":
			dst = &win.Until
		default:
			return replayWindow{}, fmt.Errorf("unknown field %s, accepted fields are since and until", echo(m.name))
		}
		if isNull(m.value) {
			continue
		}
		if *dst, err = parseRFC3339(m.name, m.value); err != nil {
			return replayWindow{}, err
		}
	}
	if !win.Since.IsZero() && !win.Until.IsZero() && win.Until.Before(win.Since) {
		return replayWindow{}, errors.New("until: must not be before since")
	}
	return win, nil
}

func parseRFC3339(field string, raw []byte) (time.Time, error) {
	s, err := stringField("", field, raw)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: must be an RFC 3339 time, found %s", field, kindOf(raw))
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: must be an RFC 3339 time, found %s", field, echo(s))
	}
	return t.UTC(), nil
}
