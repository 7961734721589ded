// Package playground holds the parts of `make dev` (cmd/hookline-dev) that
// do not need a control plane of their own: finding the source tree and
// building what it needs, supervising the manager and dispatcher as child
// processes, the demo receiver that verifies every delivery's signature,
// the sample resources, publishing events, and printing a server-side Table
// the way `kubectl get` does.
//
// It uses client-go only; starting the API server (controller-runtime's
// envtest) stays in the command.
package playground
