# Hookline build, generation and test targets. Run `make help` for a list.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

GO ?= go
CONTROLLER_GEN := $(GO) tool controller-gen
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/hookline/hookline/internal/version.Version=$(VERSION)
# The race detector needs cgo (a C compiler); without one the tests still
# run, without it.
RACE ?= $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && echo -race)
# Seconds each fuzz target runs: a short smoke run in `make test`, longer
# with `make fuzz`.
FUZZTIME ?= 5s
# The test binaries' own timeout, the only bound on how long a test may take:
# a cold build on a busy two-core machine takes many minutes, and no test
# fails because a machine is slow.
TEST_TIMEOUT ?= 60m

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: generate
generate: ## Generate deepcopy code for the API types
	$(CONTROLLER_GEN) object paths=./api/...

.PHONY: manifests
manifests: ## Generate the CRDs and the manager's RBAC from markers
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=hookline-manager paths=./controllers/... output:rbac:artifacts:config=config/rbac

.PHONY: chart
chart: ## Regenerate the Helm chart's CRDs, ClusterRoles and admission policy from config/
	$(GO) run ./hack/chartgen

.PHONY: verify
verify: generate manifests chart ## Fail if generated files are stale, gofmt would change a file, go vet complains or go.mod is untidy
	@stale=$$(git status --porcelain -- api config charts go.mod go.sum); \
	if [ -n "$$stale" ]; then echo "Generated files are stale; run 'make generate manifests chart' and commit:"; echo "$$stale"; git --no-pager diff --stat -- api config charts; exit 1; fi
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	cd hack/envtest && $(GO) mod tidy -diff

.PHONY: build
build: ## Build the binaries into bin/
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/manager ./cmd/manager
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/dispatcher ./cmd/dispatcher
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/kubectl-hookline ./cmd/kubectl-hookline

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-hookline (on the PATH it runs as kubectl hookline)
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/kubectl-hookline ./cmd/kubectl-hookline

.PHONY: dev
dev: ## Run a local playground (API server, manager, dispatcher, demo receiver, sample resources) until Ctrl-C
	@echo "Compiling the playground (cmd/hookline-dev): with empty Go caches this takes several minutes on two cores, later runs seconds"
	@hack/progress.sh "compiling the playground" $(GO) build -o bin/hookline-dev ./cmd/hookline-dev
	bin/hookline-dev

ARCH ?= amd64

.PHONY: image
image: ## Build the container image as bin/hookline-image.tar with Go alone (load it with docker load -i)
	$(GO) run ./hack/image -version $(VERSION) -arch $(ARCH) -o bin/hookline-image.tar

.PHONY: docker-build
docker-build: ## Build the same image with a Docker engine, from the Dockerfile
	docker build --build-arg VERSION=$(VERSION) -t ghcr.io/hookline/hookline:$(VERSION) .

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd from source (cached) and print their directory
	@hack/envtest.sh

.PHONY: test
test: ## Run every test against a real API server, plus a short run of each fuzz target
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh)" $(GO) test $(RACE) -count=1 -timeout $(TEST_TIMEOUT) ./...
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

.PHONY: bench
bench: ## Run the benchmarks and print one table of figures against baselines measured in the same run (about 17 minutes; BENCHFLAGS=-smoke for a quick check)
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh)" $(GO) run ./hack/bench $(BENCHFLAGS)

.PHONY: fuzz
fuzz: ## Run each fuzz target longer (FUZZTIME=60s by default here)
	FUZZTIME=$(if $(filter command line,$(origin FUZZTIME)),$(FUZZTIME),60s) hack/fuzz.sh
