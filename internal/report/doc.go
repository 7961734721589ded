// Package report turns delivery outcomes into the health a
// WebhookSubscription shows in its status: the Accepted, EndpointHealthy and
// Suspended conditions and the status.delivery block.
//
// Every dispatcher replica records outcomes in memory with a Recorder and,
// about once a second, publishes what it recorded (Recorder.Flush) to the
// stats stream of the queue. The one replica that holds the status
// leadership runs a Writer: it consumes those payloads, adds them to per
// subscription totals and server-side applies the status with its own field
// manager, at most once per subscription per interval, so the API server is
// never flooded and the controller's fields (Ready, Reconciling, Stalled,
// observedGeneration, dispatcher) are never touched. A tick keeps a few
// applies in flight (Options.MaxInFlight), since one at a time a round trip
// of 10-25 ms would cap a dispatcher at 40-100 writes a second.
//
// # Counting each outcome once
//
// The counts in the status are running totals, so a payload must reach them
// exactly once even when the writer stops at any moment. The Writer keeps
// these rules:
//
//   - Totals of a subscription start from the counts its status holds when
//     the writer first sees it. A writer that starts (a new leader, a restart)
//     therefore continues from what the previous one wrote.
//   - A payload is acknowledged only after every subscription it carries
//     counts for has been written (or turned out to be gone). A writer that
//     stops before that leaves the payload in the queue, which hands it to the
//     next writer; the status that writer starts from does not include it, so
//     nothing is lost and nothing is counted twice.
//   - Every payload carries an id (replica, process incarnation, sequence).
//     A payload the queue hands out again while the writer still holds it,
//     or after its acknowledgement was lost, is recognised and not added
//     again.
//   - All subscriptions are written together on one tick, and a payload is
//     acknowledged as soon as the last write it contributed to has returned,
//     so a payload's counts reach all its subscriptions in the same batch of
//     writes.
//
// What these rules cannot close is a writer killed between a successful
// write and the acknowledgement, or between the writes of two subscriptions
// carried by the same payload: the next writer gets the payload again and its
// counts for the already written subscriptions are added twice. The window
// is one batch of writes. Closing it needs a mark of the last payload applied
// stored atomically with the counts, which the status has no field for.
//
// The writer holds a payload for up to one interval before acknowledging
// it, longer while writes fail; a stats consumer whose ack wait is shorter
// only causes redeliveries, which the ids recognise. An ack wait of a few
// intervals avoids them.
//
// A subscription whose writes keep failing would hold every payload that
// carries its counts, and so stall the stats consumer for everyone; after
// a few failed ticks its payloads are acknowledged anyway and its counts
// live only in the writer's memory until a write succeeds.
package report
