// Package promcorr is corrstore's Prometheus metrics, for corrstore serve
// and for a Go service that embeds the store, the reaper and the client:
// both export the same metric names and labels, so one dashboard and one
// set of alerts (docs/OPERATIONS.md) fit both.
//
// New registers the metrics with a prometheus.Registerer and hands out the
// adapters:
//
//   - Store wraps a store.Store: latency of every operation by op, errors by
//     op and kind, registrations, replies by status, outcomes by state and
//     dispatch results;
//   - WatchStore reads the store's counts at each scrape: pending
//     correlations and the oldest pending age by namespace, correlations by
//     state, the dispatch backlog, early replies, and whether the store
//     answered;
//   - Reaper is a reaper.Metrics (reaper.Config.Metrics);
//   - Client is a client.Metrics (client.Config.Metrics).
//
// Counters whose label values are known in advance (replies by status,
// outcomes by state, store errors by op and kind, reaper failures by
// phase, …) are exported at 0 from the start, so that an increase() or
// rate() alert fires on the first failure instead of on the second.
//
// The name says what the package depends on, as promhttp and otelhttp do:
// a service that imports it takes the Prometheus client library, and a
// future OpenTelemetry adapter can sit beside it. "metrics" would say
// neither, and would read as a third kind of the client's and reaper's
// Metrics interfaces it implements.
package promcorr
