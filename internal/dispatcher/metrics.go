package dispatcher

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Delivery outcomes, as the "outcome" label of hookline_deliveries_total.
const (
	outcomeDelivered    = "delivered"
	outcomeRetried      = "retried"
	outcomeDeadLettered = "dead_lettered"
	outcomeSuspended    = "suspended"
	outcomeFiltered     = "filtered"
	outcomeFilterError  = "filter_error"
)

// metrics are the dispatcher's Prometheus series. Labels stay bounded: a
// subscription is named by namespace and name, never by URL or event id.
type metrics struct {
	registry *prometheus.Registry

	deliveries     *prometheus.CounterVec
	attemptLatency *prometheus.HistogramVec
	endToEnd       *prometheus.HistogramVec
	backlog        *prometheus.GaugeVec
	deadLettered   *prometheus.GaugeVec
	ingested       *prometheus.CounterVec
	queueBytes     prometheus.Gauge
	queueMaxBytes  prometheus.Gauge
	queueMessages  prometheus.Gauge
	subscriptions  prometheus.Gauge
}

func newMetrics() *metrics {
	subLabels := []string{"namespace", "subscription"}
	m := &metrics{
		registry: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_deliveries_total",
			Help: "Delivery attempts and routing decisions by outcome.",
		}, append(subLabels, "outcome")),
		attemptLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookline_delivery_attempt_duration_seconds",
			Help:    "Duration of one HTTP delivery attempt, until the response headers or the failure.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, subLabels),
		endToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookline_delivery_end_to_end_seconds",
			Help:    "Time from an event being stored to its successful delivery, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 16),
		}, subLabels),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hookline_backlog_events",
			Help: "Events waiting for delivery to a subscription, in flight and pending retries included.",
		}, subLabels),
		deadLettered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hookline_dead_lettered_events",
			Help: "Dead-lettered deliveries kept for replay, per subscription.",
		}, subLabels),
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_ingested_events_total",
			Help: "Events received on the ingest API by namespace and outcome (accepted, duplicate, rejected, failed).",
		}, []string{"namespace", "outcome"}),
		queueBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookline_queue_stored_bytes",
			Help: "Bytes the events stream holds.",
		}),
		queueMaxBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookline_queue_max_bytes",
			Help: "The events stream's size bound; ingest answers 503 once it is reached.",
		}),
		queueMessages: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookline_queue_stored_events",
			Help: "Events the events stream holds.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookline_subscriptions",
			Help: "Subscriptions this dispatcher serves.",
		}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.deliveries, m.attemptLatency, m.endToEnd, m.backlog, m.deadLettered,
		m.ingested, m.queueBytes, m.queueMaxBytes, m.queueMessages, m.subscriptions,
	)
	return m
}

// registerStatusWrites exposes the status writer's count of applies.
func (m *metrics) registerStatusWrites(f func() float64) {
	m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "hookline_status_writes_total",
		Help: "Subscription status applies made by this instance while it led status writing.",
	}, f))
}

// forget drops every series of a subscription that is no longer served.
func (m *metrics) forget(namespace, name string) {
	l := map[string]string{"namespace": namespace, "subscription": name}
	m.deliveries.DeletePartialMatch(l)
	m.attemptLatency.DeletePartialMatch(l)
	m.endToEnd.DeletePartialMatch(l)
	m.backlog.DeletePartialMatch(l)
	m.deadLettered.DeletePartialMatch(l)
}
