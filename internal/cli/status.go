package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// StatusList is what status -o json|yaml prints: the rows of the table as
// objects. The shape is stable: fields are added, never renamed or removed.
type StatusList struct {
	// Items are the subscriptions, by namespace and name.
	Items []StatusRow `json:"items"`
}

// StatusRow is the delivery health of one subscription.
type StatusRow struct {
	// Namespace of the WebhookSubscription.
	Namespace string `json:"namespace"`
	// Name of the WebhookSubscription.
	Name string `json:"name"`
	// Ready is the status of the Ready condition: "True", "False",
	// "Unknown", or "" before the controller reported it.
	Ready string `json:"ready"`
	// Healthy is the status of the EndpointHealthy condition, as Ready.
	Healthy string `json:"healthy"`
	// Reason is Ready's reason, as kubectl get shows it (for example
	// Succeeded, EndpointUnhealthy, Suspended, EndpointGone).
	Reason string `json:"reason"`
	// Message explains Reason: Ready's message, which names the failure
	// behind it.
	Message string `json:"message"`
	// LastSuccessTime is when a delivery last succeeded; null if never.
	LastSuccessTime *metav1.Time `json:"lastSuccessTime"`
	// LastFailure is the last failed attempt; null if none.
	LastFailure *StatusFailure `json:"lastFailure"`
	// Backlog is the number of events waiting for delivery.
	Backlog int64 `json:"backlog"`
	// DeadLettered counts every delivery given up on after its last
	// attempt, replayed since or not.
	DeadLettered int64 `json:"deadLettered"`
	// Replayable is how many dead-lettered deliveries are still kept for
	// replay.
	Replayable int64 `json:"replayable"`
	// Delivered counts the events delivered.
	Delivered int64 `json:"delivered"`
	// Failed counts the failed attempts.
	Failed int64 `json:"failed"`
	// Suspended is true while deliveries are held (by spec.suspend or by
	// the dispatcher after sustained failure).
	Suspended bool `json:"suspended"`
	// Dispatcher is the WebhookDispatcher serving the subscription,
	// "namespace/name".
	Dispatcher string `json:"dispatcher,omitempty"`
}

// StatusFailure is a subscription's last failed delivery attempt.
type StatusFailure struct {
	// Time of the attempt.
	Time metav1.Time `json:"time"`
	// StatusCode the endpoint answered; 0 if it did not answer.
	StatusCode int32 `json:"statusCode"`
	// Class of the error: HTTPStatus, Timeout, ConnectionError, TLSError,
	// EgressDenied, Redirect, AuthError or InvalidRequest.
	Class string `json:"class"`
	// Message describes the failure, without secret material.
	Message string `json:"message"`
}

type statusOptions struct {
	allNamespaces bool
	output        string
}

func newStatusCommand(a *app) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [SUBSCRIPTION] [-A] [-o table|wide|json|yaml]",
		Short: "Show the delivery health of subscriptions",
		Long: `Show the delivery health of the subscriptions of a namespace (all of them
with -A, or one): whether they are Ready and their endpoint healthy, when a
delivery last succeeded and last failed (with the error class or HTTP
status), Ready's reason (as kubectl get shows it), the backlog waiting for
delivery, the deliveries ever given up on (DEAD-LETTERED), how many of
those are still kept for replay (REPLAYABLE), and whether deliveries are
held. -o wide adds the events delivered, the failed attempts and the
dispatcher.

-o json and -o yaml print the same rows as objects:
  {"items": [{"namespace", "name", "ready", "healthy", "reason", "message",
    "lastSuccessTime", "lastFailure": {"time", "statusCode", "class",
    "message"}, "backlog", "deadLettered", "replayable", "delivered",
    "failed", "suspended", "dispatcher"}]}
This shape is stable; it is not the WebhookSubscription object.`,
		Example: `  # The subscriptions of namespace shop
  kubectl hookline status -n shop

  # One subscription, with the messages of its conditions
  kubectl hookline status billing -n shop

  # With the counts of deliveries and failed attempts
  kubectl hookline status -n shop -o wide

  # Every namespace, as JSON
  kubectl hookline status -A -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("status takes at most one SUBSCRIPTION, got %d arguments; see %s --help", len(args), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "table", "wide", "json", "yaml":
			default:
				return usageErrorf("-o %q is not one of table, wide, json, yaml", o.output)
			}
			if o.allNamespaces && len(args) == 1 {
				return usageErrorf("a SUBSCRIPTION name cannot be combined with -A; pass -n NAMESPACE instead")
			}
			return a.status(cmd, o, args)
		},
	}
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "List the subscriptions of every namespace")
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "Output format: table, wide, json or yaml")
	return cmd
}

func (a *app) status(cmd *cobra.Command, o *statusOptions, args []string) error {
	ctx := cmd.Context()
	hl, err := a.hooklineClient()
	if err != nil {
		return err
	}
	ns := ""
	if !o.allNamespaces {
		if ns, err = a.namespace(); err != nil {
			return err
		}
	}
	var subs []hooklinev1.WebhookSubscription
	if len(args) == 1 {
		sub, err := hl.subscription(ctx, ns, args[0])
		if err != nil {
			return apiError(err, "subscription "+ns+"/"+args[0], "list them with kubectl hookline status -n "+ns)
		}
		subs = append(subs, *sub)
	} else {
		list, err := hl.subscriptions(ctx, ns)
		if err != nil {
			where := "the subscriptions of namespace " + ns
			if o.allNamespaces {
				where = "the subscriptions of all namespaces"
			}
			return apiError(err, where, "check -n")
		}
		subs = list.Items
	}
	now := a.clock.Now()
	rows := make([]StatusRow, 0, len(subs))
	for i := range subs {
		rows = append(rows, statusRowOf(&subs[i]))
	}
	switch o.output {
	case "json":
		out, err := json.MarshalIndent(StatusList{Items: rows}, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding the rows: %w", err)
		}
		fmt.Fprintln(a.out, string(out))
		return nil
	case "yaml":
		out, err := yaml.Marshal(StatusList{Items: rows})
		if err != nil {
			return fmt.Errorf("encoding the rows: %w", err)
		}
		_, err = a.out.Write(out)
		return err
	}
	if len(rows) == 0 {
		if o.allNamespaces {
			fmt.Fprintln(a.errOut, "No subscriptions found.")
		} else {
			fmt.Fprintf(a.errOut, "No subscriptions found in namespace %s.\n", ns)
		}
		return nil
	}
	if err := printStatusTable(a.out, rows, o.allNamespaces, o.output == "wide", now); err != nil {
		return err
	}
	if len(args) == 1 {
		printDetails(a.out, rows[0])
	}
	return nil
}

// statusRowOf computes the row of one subscription.
func statusRowOf(sub *hooklinev1.WebhookSubscription) StatusRow {
	row := StatusRow{
		Namespace:  sub.Namespace,
		Name:       sub.Name,
		Dispatcher: sub.Status.Dispatcher,
	}
	conds := sub.Status.Conditions
	ready := meta.FindStatusCondition(conds, hooklinev1.ConditionReady)
	healthy := meta.FindStatusCondition(conds, hooklinev1.ConditionEndpointHealthy)
	suspended := meta.FindStatusCondition(conds, hooklinev1.ConditionSuspended)
	if ready != nil {
		row.Ready, row.Reason, row.Message = string(ready.Status), ready.Reason, ready.Message
	}
	if healthy != nil {
		row.Healthy = string(healthy.Status)
	}
	row.Suspended = sub.Spec.Suspend || (suspended != nil && suspended.Status == metav1.ConditionTrue)
	if d := sub.Status.Delivery; d != nil {
		row.LastSuccessTime = d.LastSuccessTime
		if f := d.LastFailure; f != nil {
			row.LastFailure = &StatusFailure{Time: f.Time, StatusCode: f.StatusCode, Class: f.Class, Message: f.Message}
		}
		row.Backlog, row.DeadLettered, row.Replayable = d.Backlog, d.DeadLettered, d.Replayable
		row.Delivered, row.Failed = d.Delivered, d.Failed
	}
	return row
}

// printStatusTable writes rows as kubectl does: upper-case headers, columns
// aligned with spaces; wide adds the counts of deliveries and failed
// attempts, and the dispatcher.
func printStatusTable(w io.Writer, rows []StatusRow, withNamespace, wide bool, now time.Time) error {
	tw := printers.GetNewTabWriter(w)
	header := statusHeader(wide)
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := statusCells(r, wide, now)
		if withNamespace {
			cells = append([]string{r.Namespace}, cells...)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	return nil
}

// statusHeader is the table's header, NAMESPACE aside.
func statusHeader(wide bool) []string {
	if wide {
		return []string{"NAME", "READY", "HEALTHY", "LAST SUCCESS", "LAST FAILURE", "REASON", "BACKLOG", "DELIVERED", "FAILED ATTEMPTS", "DEAD-LETTERED", "REPLAYABLE", "SUSPENDED", "DISPATCHER"}
	}
	return []string{"NAME", "READY", "HEALTHY", "LAST SUCCESS", "LAST FAILURE", "REASON", "BACKLOG", "DEAD-LETTERED", "REPLAYABLE", "SUSPENDED"}
}

// statusCells are the table cells of a row, NAMESPACE aside.
func statusCells(r StatusRow, wide bool, now time.Time) []string {
	lastSuccess := "never"
	if r.LastSuccessTime != nil {
		lastSuccess = age(now, r.LastSuccessTime.Time)
	}
	lastFailure := "never"
	if f := r.LastFailure; f != nil {
		lastFailure = age(now, f.Time.Time)
		var what []string
		if f.Class != "" {
			what = append(what, f.Class)
		}
		if f.StatusCode != 0 {
			what = append(what, strconv.Itoa(int(f.StatusCode)))
		}
		if len(what) > 0 {
			lastFailure += " (" + strings.Join(what, " ") + ")"
		}
	}
	cells := []string{
		r.Name,
		orDefault(r.Ready, "-"),
		orDefault(r.Healthy, "-"),
		lastSuccess,
		lastFailure,
		orDefault(r.Reason, "-"),
		strconv.FormatInt(r.Backlog, 10),
	}
	if wide {
		cells = append(cells, strconv.FormatInt(r.Delivered, 10), strconv.FormatInt(r.Failed, 10))
	}
	cells = append(cells,
		strconv.FormatInt(r.DeadLettered, 10),
		strconv.FormatInt(r.Replayable, 10),
		strconv.FormatBool(r.Suspended),
	)
	if wide {
		cells = append(cells, orDefault(r.Dispatcher, "-"))
	}
	return cells
}

// printDetails adds, for a single subscription, the messages the table has
// no room for.
func printDetails(w io.Writer, r StatusRow) {
	if r.Message != "" {
		fmt.Fprintf(w, "\n%s: %s\n", orDefault(r.Reason, "Reason"), oneLine(r.Message))
	}
	if f := r.LastFailure; f != nil && f.Message != "" {
		fmt.Fprintf(w, "Last failure (%s): %s\n", f.Time.UTC().Format(time.RFC3339), oneLine(f.Message))
	}
}

// age is how long before now t was, as kubectl shows ages ("12s", "5m",
// "3d").
func age(now, t time.Time) string {
	return duration.HumanDuration(now.Sub(t))
}
