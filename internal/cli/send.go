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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Defaults of a test delivery.
const (
	defaultTestType = "hookline.test"
	defaultTestData = `{"message":"Test delivery from kubectl hookline"}`
)

type sendOptions struct {
	ingest   ingestFlags
	typ      string
	data     string
	file     string
	id       string
	to       string
	timeout  time.Duration
	flagsSet func(name string) bool
}

func newSendCommand(a *app) *cobra.Command {
	o := &sendOptions{}
	cmd := &cobra.Command{
		Use:   "send (--type TYPE [--data JSON | -f FILE] [--id ID] | --to SUBSCRIPTION)",
		Short: "Publish an event, or make a test delivery to one subscription",
		Long: `Publish an event through a dispatcher's ingest API
(POST /v1/namespaces/NAMESPACE/events) and print the id it was stored
under. Publishing the same --id again within the dispatcher's deduplication
window stores it once ("(duplicate)").

With --to, make a test delivery to that one subscription instead: the
dispatcher signs and sends it at once, without queueing, retrying or
counting it in status, and reports the endpoint's answer and the keys that
signed it. It exits with 3 when the delivery did not succeed.

The ingest API is --ingest-url, else a port-forward to a Ready pod of
--dispatcher (for --to: the dispatcher the subscription is attached to),
else, for a dispatcher running outside pods (as in make dev), the URL its
instance announces.
The bearer token is --token-file, else a 10-minute token requested for
--service-account, else the kubeconfig's own bearer token.`,
		Example: `  # Publish as the ServiceAccount checkout of namespace shop
  kubectl hookline send -n shop --service-account checkout --type order.created --id order-1042 --data '{"total":42}'

  # Publish the data of a file to a dispatcher running on this machine
  kubectl hookline send -n shop --ingest-url http://127.0.0.1:8080 --token-file token --type order.created -f order.json

  # Test delivery to the subscription billing
  kubectl hookline send -n shop --service-account ops --to billing`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.flagsSet = func(name string) bool { return changed(cmd.Flags(), name) }
			if err := o.validate(); err != nil {
				return err
			}
			return a.send(cmd, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.typ, "type", "", "Event type, such as order.created (with --to: default "+defaultTestType+")")
	fs.StringVar(&o.data, "data", "", "Event data as JSON, such as '{\"total\":42}' or '\"text\"'")
	fs.StringVarP(&o.file, "filename", "f", "", "Read the event data (JSON) from this file, - for stdin")
	fs.StringVar(&o.id, "id", "", "Event id, for idempotent publishing; the dispatcher generates one when absent")
	fs.StringVar(&o.to, "to", "", "Make a test delivery to this subscription instead of publishing")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "How long to wait for the dispatcher's answer (a test delivery waits for the endpoint)")
	o.ingest.add(fs)
	return cmd
}

func (o *sendOptions) validate() error {
	switch {
	case o.to == "" && o.typ == "":
		return usageErrorf("--type is required, for example --type order.created (or --to SUBSCRIPTION for a test delivery)")
	case o.to != "" && o.id != "":
		return usageErrorf("--id does not apply to a test delivery (--to); drop it")
	case o.to != "" && o.file != "":
		return usageErrorf("-f does not apply to a test delivery (--to); pass the data with --data")
	case o.flagsSet("data") && o.file != "":
		return usageErrorf("pass the event data with --data or -f, not both")
	case o.timeout <= 0:
		return usageErrorf("--timeout must be positive, for example --timeout 1m")
	}
	return nil
}

// eventData returns the data to send, checked to be JSON, or nil for none.
func (o *sendOptions) eventData(stdin io.Reader) (json.RawMessage, error) {
	var raw []byte
	source := "--data"
	switch {
	case o.file == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the event data from stdin: %w", err)
		}
		raw, source = b, "the data on stdin"
	case o.file != "":
		b, err := os.ReadFile(o.file)
		if err != nil {
			return nil, fmt.Errorf("reading the event data: %w", err)
		}
		raw, source = b, o.file
	case o.flagsSet("data"):
		raw = []byte(o.data)
	case o.to != "":
		raw = []byte(defaultTestData)
	default:
		return nil, nil
	}
	if err := checkJSON(raw); err != nil {
		return nil, usageErrorf("%s is not valid JSON (%v); pass a JSON value, for example --data '{\"total\":42}' or --data '\"text\"'", source, err)
	}
	return json.RawMessage(bytes.TrimSpace(raw)), nil
}

// checkJSON reports why raw is not a single JSON value.
func checkJSON(raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return errors.New("it is empty")
	}
	var v json.RawMessage
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return nil
}

// eventRequest is the body of POST .../events.
type eventRequest struct {
	ID   string          `json:"id,omitempty"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data,omitempty"`
}

// acceptedAnswer is the ingest API's 202 answer.
type acceptedAnswer struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// testRequest is the body of POST .../subscriptions/NAME:test.
type testRequest struct {
	Type string          `json:"type,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

// testResult is the dispatcher's report of a test delivery.
type testResult struct {
	ID         string   `json:"id"`
	Success    bool     `json:"success"`
	StatusCode int      `json:"statusCode"`
	LatencyMs  float64  `json:"latencyMs"`
	Class      string   `json:"class"`
	Message    string   `json:"message"`
	SignedWith []string `json:"signedWith"`
	CurrentKey string   `json:"currentKey"`
}

func (a *app) send(cmd *cobra.Command, o *sendOptions) error {
	data, err := o.eventData(a.in)
	if err != nil {
		return err
	}
	ns, err := a.namespace()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	var fallback func() (string, error)
	if o.to != "" {
		fallback = a.subscriptionDispatcher(ctx, ns, o.to)
	}
	c, closeFn, err := a.connectIngest(ctx, cmd.Flags(), &o.ingest, ns, fallback)
	if err != nil {
		return err
	}
	defer closeFn()
	if o.to != "" {
		return a.testDelivery(ctx, c, ns, o.to, testRequest{Type: orDefault(o.typ, defaultTestType), Data: data})
	}

	status, body, err := c.post(ctx, "/v1/namespaces/"+url.PathEscape(ns)+"/events", eventRequest{ID: o.id, Type: o.typ, Data: data})
	if err != nil {
		return err
	}
	if status != http.StatusAccepted {
		return c.refusal(status, body)
	}
	var ans acceptedAnswer
	if err := json.Unmarshal(body, &ans); err != nil || ans.ID == "" {
		return fmt.Errorf("unexpected answer from %s: HTTP %d: %s", c.where, status, answerMessage(body))
	}
	if ans.Duplicate {
		fmt.Fprintf(a.out, "accepted %s (duplicate)\n", ans.ID)
	} else {
		fmt.Fprintf(a.out, "accepted %s\n", ans.ID)
	}
	return nil
}

func (a *app) testDelivery(ctx context.Context, c *ingestClient, ns, name string, req testRequest) error {
	ref := ns + "/" + name
	statusHint := "kubectl hookline status " + name + " -n " + ns
	status, body, err := c.post(ctx, subscriptionPath(ns, name, "test"), req)
	if err != nil {
		return err
	}
	msg := answerMessage(body)
	switch {
	case status == http.StatusOK:
	case status == http.StatusNotFound && !strings.HasPrefix(msg, "no such endpoint"):
		return fmt.Errorf("subscription %s is not served by %s (%s); check that it exists and is attached to that dispatcher: %s", ref, c.where, msg, statusHint)
	case status == http.StatusConflict:
		// The dispatcher's message starts with its sentinel's text.
		msg = strings.TrimPrefix(msg, "subscription cannot be delivered to: ")
		return fmt.Errorf("subscription %s cannot be served: %s; fix what its Accepted condition says (%s)", ref, msg, statusHint)
	default:
		return c.refusal(status, body)
	}
	var r testResult
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("unexpected answer from %s: HTTP 200: %s", c.where, msg)
	}
	line, ok := describeTestDelivery(ref, r)
	fmt.Fprintln(a.out, line)
	if !ok {
		return failed()
	}
	return nil
}

// describeTestDelivery is the line reporting a test delivery to ref
// ("namespace/name"), and whether it succeeded.
func describeTestDelivery(ref string, r testResult) (string, bool) {
	latency := formatLatency(r.LatencyMs)
	if !r.Success {
		// As in the status table: "HTTPStatus 500", "TLSError".
		what := orDefault(r.Class, "HTTP")
		msg := oneLine(r.Message)
		if r.StatusCode != 0 {
			what += " " + strconv.Itoa(r.StatusCode)
			msg = strings.TrimPrefix(msg, fmt.Sprintf("HTTP %d: ", r.StatusCode))
		} else if r.Class == "" {
			what = "delivery"
		}
		line := fmt.Sprintf("failed: %s after %s", what, latency)
		if msg != "" {
			line += ": " + msg
		}
		return line, false
	}
	return fmt.Sprintf("delivered %s to %s: HTTP %d in %s, %s", r.ID, ref, r.StatusCode, latency, signedPhrase(r.SignedWith, r.CurrentKey)), true
}

// signedPhrase says which keys signed, and warns when the current key was
// not among them: the dispatcher has not picked up a rotation yet.
func signedPhrase(signedWith []string, current string) string {
	switch {
	case len(signedWith) == 0:
		return "signed with no key reported"
	case current == "":
		return "signed with " + strings.Join(signedWith, " and ")
	case !slices.Contains(signedWith, current):
		return fmt.Sprintf("signed with %s, NOT the current key %s: a rotation is in progress and the dispatcher does not sign with the new key yet",
			strings.Join(signedWith, " and "), current)
	}
	others := slices.DeleteFunc(slices.Clone(signedWith), func(id string) bool { return id == current })
	if len(others) == 0 {
		return "signed with the current key " + current
	}
	return fmt.Sprintf("signed with the current key %s and the previous key %s (a rotation's overlap)", current, strings.Join(others, " and "))
}

// formatLatency shows milliseconds as "12ms" (truncated) below a second,
// "1.2s" above.
func formatLatency(ms float64) string {
	if ms < 1000 {
		return fmt.Sprintf("%dms", int64(ms))
	}
	return fmt.Sprintf("%.1fs", ms/1000)
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
