# syntax=docker/dockerfile:1.7
ARG GO_VERSION=1.23
ARG ALPINE=3.20
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-alpine AS build
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=bind,from=ghcr.io/org/tools:2,target=/tools \
    GOARCH=$TARGETARCH go build -o /out/app ./cmd/app
FROM build AS test
RUN go test ./...
FROM alpine:${ALPINE}@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa AS runtime
COPY --from=build /out/app /usr/local/bin/app
COPY --from=busybox:1.36 /bin/busybox /bin/busybox
ENTRYPOINT ["app"]
# GO_VERSION=1.22 ALPINE=3.19
