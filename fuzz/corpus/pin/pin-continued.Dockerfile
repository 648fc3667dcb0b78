FROM \
  --platform=linux/amd64 \
# comment
  alpine:3.20 \
  AS base
FROM alpine\
:3.20
