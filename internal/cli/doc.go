// Package cli implements kubectl hookline, the kubectl plugin for Hookline:
// it publishes events and test deliveries through a dispatcher's ingest
// API, shows the delivery health of subscriptions, rotates signing keys,
// replays dead-lettered deliveries and verifies captured requests with the
// receiver SDK (pkg/receiver).
//
// Every command reports a failure as one line on stderr that says what to
// do next, and exits with a documented code (see the Exit constants), so
// that scripts can tell a refused verification from a broken connection.
package cli
