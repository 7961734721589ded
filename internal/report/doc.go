// Package report turns delivery outcomes into the health a
// WebhookSubscription shows in its status: the Accepted, EndpointHealthy,
// Suspended and EndpointValidated conditions and the status.delivery block.
//
// The dispatcher counts every outcome into its subscription's Totals (Add,
// AddFilterError) and stores those totals in its checkpoints, together with
// the position of the events they count. The counts are therefore exact
// after a crash: an event delivered again after a crash is counted once,
// since the totals go back to the checkpoint the delivery started from.
//
// The one replica that holds the status leadership runs a Writer. It reads
// each subscription's totals and queue state through Lookup (State.Totals)
// and server-side applies the status with its own field manager
// (DefaultFieldManager), at most once per subscription per Interval, plus
// at once when Prompt says a new generation is served and the Accepted
// condition does not describe it yet. It applies only the conditions it owns
// (ConditionTypes) and status.delivery, so the controller's fields (Ready,
// Reconciling, Stalled, observedGeneration, dispatcher) are never touched.
// A tick keeps a few applies in flight (Options.MaxInFlight), since one at a
// time a round trip of 10-25 ms would cap a dispatcher at 40-100 writes a
// second.
//
// A writer that starts (a new leader, a restart) begins from the statuses:
// until Lookup reports totals for a subscription, the counts its status
// holds (TotalsFromStatus) are kept.
package report
