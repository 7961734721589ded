// Package flux holds examples of installing and health-checking Hookline
// with Flux: helmrelease.yaml installs the chart, kustomization.yaml
// applies a team's Hookline objects and waits for them. The package has no
// Go API: its tests evaluate the Kustomization's health check expressions
// as Flux does against the status fixtures of ../argocd/testdata, check
// that the HelmRelease sets only values the chart has, and that
// docs/gitops.md shows both files as they are.
package flux
