# syntax=docker/dockerfile:1
#
# Hookline's image: the manager (the entrypoint) and the dispatcher, which
# the manager runs in dispatcher pods from this same image with the command
# /dispatcher. Build it with:
#
#   docker build --build-arg VERSION=v0.1.0 -t ghcr.io/hookline/hookline:v0.1.0 .
#
# Keep VERSION and the tag equal: the manager's default dispatcher image is
# ghcr.io/hookline/hookline:<the version stamped into it>. Without a
# container engine, hack/image builds the same image from Go alone.

# The builder runs on the build machine's platform and cross-compiles, which
# is much faster than emulating the target.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
WORKDIR /src
# Modules first, so that editing the sources does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# Static binaries (no cgo): the final image has no C library or loader.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags "-s -w -X github.com/hookline/hookline/internal/version.Version=${VERSION}" \
      -o /out/ ./cmd/manager ./cmd/dispatcher

# distroless/static has CA certificates, tzdata, /etc/passwd with the
# nonroot user (65532) and nothing else: no shell, no package manager.
FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.source="https://github.com/hookline/hookline" \
      org.opencontainers.image.title="hookline" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/manager /out/dispatcher /
WORKDIR /
USER 65532:65532
ENTRYPOINT ["/manager"]
