// Package argocd holds Argo CD health checks for the Hookline kinds, one
// Lua script per kind under resource_customizations/hookline.dev/<Kind>/
// (the layout of Argo CD's own built-in checks), and argocd-cm.yaml, the
// same scripts as argocd-cm keys. The package has no Go API: its tests run
// the scripts in the Lua sandbox Argo CD uses against fixtures of the
// statuses the controllers and the dispatcher write, and fail when
// argocd-cm.yaml no longer matches the scripts; `go test ./gitops/argocd
// -run TestConfigMap -update` rewrites it.
package argocd
