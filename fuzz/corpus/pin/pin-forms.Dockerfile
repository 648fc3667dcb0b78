ARG BASE=alpine:3.20
FROM --platform=$BUILDPLATFORM ${BASE} AS build
RUN --mount=type=bind,from=golang:1.23,target=/go true
FROM alpine:3.20
COPY --from=build /a /a
COPY --from="busybox:1" /b /b
