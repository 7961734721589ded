package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

const (
	// progressInterval is how often replay reports progress.
	progressInterval = time.Second
	// replayCallTimeout bounds the replay request to the dispatcher.
	replayCallTimeout = time.Minute
)

type replayOptions struct {
	ingest  ingestFlags
	since   time.Duration
	until   time.Duration
	noWait  bool
	timeout time.Duration
}

func newReplayCommand(a *app) *cobra.Command {
	o := &replayOptions{}
	cmd := &cobra.Command{
		Use:   "replay SUBSCRIPTION --since DURATION [--until DURATION] [--no-wait]",
		Short: "Deliver dead-lettered deliveries of a subscription again",
		Long: `Queue again, for this subscription alone and with their original
webhook-id, the deliveries that were given up on (dead-lettered) within the
window: from --since ago until --until ago (now by default). Then, unless
--no-wait, report progress every second from the subscription's status
(the backlog, and the deliveries, failed attempts and dead letters counted
since the command started) until the replayed deliveries are settled and
the backlog is back to 0, or --timeout. Status is written every few
seconds, so progress moves in steps. When replayed deliveries were
dead-lettered again (the endpoint still fails), it says so and exits with
3; they are kept for another replay.

It calls the dispatcher's ingest API (same connection and credential
options as send); the token's user needs update on the subscription.`,
		Example: `  # Replay what was dead-lettered in the last hour, as the kubeconfig's user
  kubectl hookline replay billing -n shop --since 1h

  # Replay yesterday's dead letters through a local dispatcher, without waiting
  kubectl hookline replay billing -n shop --since 48h --until 24h --ingest-url http://127.0.0.1:8080 --token-file token --no-wait`,
		Args: exactlyOneArg("SUBSCRIPTION name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case !changed(cmd.Flags(), "since"):
				return usageErrorf("--since is required, for example --since 1h")
			case o.since <= 0:
				return usageErrorf("--since must be positive, for example --since 1h")
			case o.until < 0 || o.until >= o.since:
				return usageErrorf("--until must be shorter than --since: the window runs from --since ago to --until ago")
			case o.timeout <= 0:
				return usageErrorf("--timeout must be positive, for example --timeout 5m")
			}
			return a.replay(cmd, o, args[0])
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&o.since, "since", 0, "Replay deliveries dead-lettered at most this long ago (required)")
	fs.DurationVar(&o.until, "until", 0, "Replay deliveries dead-lettered at least this long ago")
	fs.BoolVar(&o.noWait, "no-wait", false, "Do not wait for the replayed deliveries")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "How long to wait for the backlog to drain")
	o.ingest.add(fs)
	return cmd
}

// replayRequest is the body of POST .../subscriptions/NAME:replay.
type replayRequest struct {
	Since string `json:"since"`
	Until string `json:"until,omitempty"`
}

type replayAnswer struct {
	Replayed *int `json:"replayed"`
}

func (a *app) replay(cmd *cobra.Command, o *replayOptions, name string) error {
	ctx := cmd.Context()
	ns, err := a.namespace()
	if err != nil {
		return err
	}
	ref := ns + "/" + name
	// The counts before the replay tell, later, which deliveries are the
	// replayed ones.
	var before *hooklinev1.DeliveryStatus
	if !o.noWait {
		sub, err := a.readSubscription(ctx, ns, name)
		if err != nil {
			return err
		}
		before = deliveryOf(sub)
	}
	c, closeFn, err := a.connectIngest(ctx, cmd.Flags(), &o.ingest, ns, a.subscriptionDispatcher(ctx, ns, name))
	if err != nil {
		return err
	}
	defer closeFn()
	now := a.clock.Now().UTC()
	req := replayRequest{Since: now.Add(-o.since).Format(time.RFC3339)}
	if o.until > 0 {
		req.Until = now.Add(-o.until).Format(time.RFC3339)
	}
	// The wait below has its own --timeout; the call itself gets a minute.
	postCtx, cancel := context.WithTimeout(ctx, replayCallTimeout)
	defer cancel()
	status, body, err := c.post(postCtx, subscriptionPath(ns, name, "replay"), req)
	if err != nil {
		return err
	}
	switch {
	case status == http.StatusOK:
	case status == http.StatusNotFound:
		if msg := answerMessage(body); !strings.HasPrefix(msg, "no such endpoint") {
			return fmt.Errorf("subscription %s is not served by %s (%s); check that it exists and is attached to that dispatcher: kubectl hookline status %s -n %s", ref, c.where, msg, name, ns)
		}
		return c.refusal(status, body)
	default:
		return c.refusal(status, body)
	}
	var ans replayAnswer
	if err := json.Unmarshal(body, &ans); err != nil || ans.Replayed == nil {
		return fmt.Errorf("unexpected answer from %s: HTTP 200: %s", c.where, answerMessage(body))
	}
	n := *ans.Replayed
	fmt.Fprintf(a.out, "replayed %d dead-lettered %s of %s\n", n, plural(n, "delivery", "deliveries"), ref)
	if o.noWait || n == 0 {
		return nil
	}
	return a.waitReplayed(ctx, ns, name, before, int64(n), o.timeout)
}

// waitReplayed reports progress until the subscription's status shows the
// n replayed deliveries settled (delivered, or dead-lettered again) and no
// backlog, which a status written before the replay cannot show.
func (a *app) waitReplayed(ctx context.Context, ns, name string, before *hooklinev1.DeliveryStatus, n int64, timeout time.Duration) error {
	deadline := a.clock.Now().Add(timeout)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.clock.After(progressInterval):
		}
		sub, err := a.readSubscription(ctx, ns, name)
		if err != nil {
			return err
		}
		p := replayProgress(before, deliveryOf(sub), n)
		if p.done {
			fmt.Fprintf(a.out, "done: backlog 0, delivered +%d, failed +%d, dead-lettered again +%d\n", p.delivered, p.failed, p.deadLettered)
			if p.deadLettered > 0 {
				return deadLetteredAgain(sub, p.deadLettered, n)
			}
			return nil
		}
		fmt.Fprintf(a.out, "waiting: backlog %d, delivered +%d, failed +%d, dead-lettered again +%d\n", p.backlog, p.delivered, p.failed, p.deadLettered)
		if !a.clock.Now().Before(deadline) {
			return timeoutErrorf("timed out after %s with a backlog of %d; deliveries go on: follow them with kubectl hookline status %s -n %s", timeout, p.backlog, name, ns)
		}
	}
}

type progress struct {
	backlog, delivered, failed, deadLettered int64
	done                                     bool
}

// replayProgress compares the delivery status before and now: each of the
// n replayed deliveries ends delivered or dead-lettered again.
func replayProgress(before, now *hooklinev1.DeliveryStatus, n int64) progress {
	// A count read before the replay may have been ahead of what the
	// dispatcher had checkpointed yet: a difference is never negative.
	p := progress{
		backlog:      now.Backlog,
		delivered:    max(now.Delivered-before.Delivered, 0),
		failed:       max(now.Failed-before.Failed, 0),
		deadLettered: max(now.DeadLettered-before.DeadLettered, 0),
	}
	p.done = now.Backlog == 0 && p.delivered+p.deadLettered >= n
	return p
}

// deadLetteredAgain is the outcome of a replay whose deliveries were given
// up on again (exit 3): the endpoint still fails, and says how.
func deadLetteredAgain(sub *hooklinev1.WebhookSubscription, again, n int64) error {
	why := "the endpoint still fails"
	if f := deliveryOf(sub).LastFailure; f != nil {
		what := f.Class
		if f.StatusCode != 0 {
			what = fmt.Sprintf("HTTP %d", f.StatusCode)
		}
		why += " (last: " + what + ")"
	}
	return &exitError{code: ExitFailed, msg: fmt.Sprintf("%d of the %d replayed %s dead-lettered again: %s; they are kept for replay: fix the endpoint, then run kubectl hookline replay %s -n %s again",
		again, n, plural(int(n), "delivery was", "deliveries were"), why, sub.Name, sub.Namespace)}
}

func (a *app) readSubscription(ctx context.Context, ns, name string) (*hooklinev1.WebhookSubscription, error) {
	hl, err := a.hooklineClient()
	if err != nil {
		return nil, err
	}
	sub, err := hl.subscription(ctx, ns, name)
	if err != nil {
		return nil, apiError(err, "subscription "+ns+"/"+name, "list them with kubectl hookline status -n "+ns)
	}
	return sub, nil
}

func deliveryOf(sub *hooklinev1.WebhookSubscription) *hooklinev1.DeliveryStatus {
	if sub.Status.Delivery == nil {
		return &hooklinev1.DeliveryStatus{}
	}
	return sub.Status.Delivery
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
