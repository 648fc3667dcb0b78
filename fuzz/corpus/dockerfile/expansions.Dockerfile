ARG E=
ARG V=1.2.3
ARG REG="registry.example.com" REPO=team/app
ARG IMAGE=${REG}/${REPO}
FROM alpine:3${E-.19} AS a
FROM alpine:${V%.*} AS b
FROM alpine:${V%%.*} AS c
FROM alpine:${V#*.} AS d
FROM alpine:${V##*.} AS e
FROM alpine:${V/./-} AS f
FROM alpine:${V//./-} AS g
FROM ${IMAGE}:${TARGETARCH:-amd64}${TARGETVARIANT:+-$TARGETVARIANT} AS h
FROM $IMAGE:'v1' AS i
FROM "alpine:${V:?must_be_set}" AS j
FROM alpine:${V:+set}
