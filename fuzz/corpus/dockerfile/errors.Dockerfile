# syntax=docker/dockerfile:1
# syntax=docker/dockerfile:1.4
FROM Alpine AS 1st
COPY --from=$IMG /x /y
RUN --mount=type=bind,from=${T},ro,nonsense true
FROM ${NOPE}
