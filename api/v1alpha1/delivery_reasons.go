package v1alpha1

// Reasons of the conditions the dispatcher writes on subscriptions
// (Accepted, EndpointHealthy, Suspended). Where a subscription is not
// accepted for a reason the controller also reports (a namespace the
// dispatcher does not admit, a URL its egress policy refuses), the shared
// reasons above are used instead.
const (
	// ReasonAccepted means a running dispatcher serves the subscription:
	// its events are routed, filtered and delivered.
	ReasonAccepted = "Accepted"
	// ReasonNotServed means the dispatcher does not serve the
	// subscription; the message says why. More specific reasons are used
	// where one applies.
	ReasonNotServed = "NotServed"
	// ReasonFilterInvalid means the dispatcher could not compile the
	// subscription's filter, so it delivers nothing until the filter is
	// fixed.
	ReasonFilterInvalid = "FilterInvalid"
	// ReasonNoDeliveries means no delivery has been attempted yet, so the
	// endpoint's health is unknown.
	ReasonNoDeliveries = "NoDeliveries"
	// ReasonDeliverySucceeded means the last delivery attempts succeeded,
	// or fewer consecutive attempts failed than make an endpoint unhealthy.
	ReasonDeliverySucceeded = "DeliverySucceeded"
	// ReasonDeliveryFailing means consecutive delivery attempts failed; the
	// message names the count and the last failure.
	ReasonDeliveryFailing = "DeliveryFailing"
	// ReasonEndpointGone means the endpoint answered 410 Gone: it asked not
	// to receive deliveries any more, and the subscription is suspended.
	ReasonEndpointGone = "EndpointGone"
	// ReasonEgressDenied means the dispatcher's egress policy refused the
	// address the endpoint's name resolved to; such attempts are not
	// retried.
	ReasonEgressDenied = "EgressDenied"
	// ReasonSuspendedBySpec means spec.suspend holds the deliveries; they
	// stay queued until it is set back to false.
	ReasonSuspendedBySpec = "SuspendedBySpec"
	// ReasonSustainedFailure means every attempt failed for
	// spec.delivery.suspendAfter: the dispatcher holds the deliveries until
	// the spec changes or spec.suspend is set and cleared.
	ReasonSustainedFailure = "SustainedFailure"
	// ReasonValidationAccepted means the endpoint accepted the validation
	// handshake.
	ReasonValidationAccepted = "ValidationAccepted"
	// ReasonValidationRefused means the endpoint refused the validation
	// handshake, or could not be asked; deliveries wait, and the handshake
	// is tried again every minute.
	ReasonValidationRefused = "ValidationRefused"
	// ReasonValidationPending means the handshake has not been answered yet.
	ReasonValidationPending = "ValidationPending"
	// ReasonReplayed is the Event reason of a replay of dead-lettered
	// deliveries.
	ReasonReplayed = "Replayed"
	// ReasonDeadLettered is the Event reason of deliveries given up on
	// after their last attempt: one Event per series of them, counted in
	// its series.
	ReasonDeadLettered = "DeadLettered"
	// ReasonNotSuspended means deliveries are not held.
	ReasonNotSuspended = "NotSuspended"
)

// Reasons of the Events a dispatcher emits about itself, on its
// WebhookDispatcher.
const (
	// ReasonQueueNearlyFull means the events stream holds more than 80% of
	// its bound; ingest answers 503 once it is full.
	ReasonQueueNearlyFull = "QueueNearlyFull"
	// ReasonQueueFull means ingest refused events with 503 because the
	// events stream reached its bound.
	ReasonQueueFull = "QueueFull"
)
