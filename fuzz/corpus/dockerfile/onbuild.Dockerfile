FROM alpine:3.20 AS base
ONBUILD COPY --from=busybox:1.36 /bin /bin
ONBUILD COPY --from=base /a /b
onbuild run --mount=from=ghcr.io/x/y:1,target=/y true
FROM base
COPY --from=0 /x /y
COPY --from=later /x /y
FROM scratch AS later
