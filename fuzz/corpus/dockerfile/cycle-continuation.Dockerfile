FROM alpine AS a
COPY --from=a /x /y
FROM \
# c

  busybox AS b
RUN echo \\
FROM b
