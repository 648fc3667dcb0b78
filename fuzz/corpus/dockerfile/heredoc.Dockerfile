FROM debian:12 AS base
RUN <<EOF
apt-get update
FROM evil:1
echo \
EOF
COPY <<ONE <<"TWO" /etc/
one
ONE
two $X
TWO
RUN <<-'EOT' bash
	set -e
	EOT
ONBUILD RUN <<EOF
echo onbuild
EOF
FROM base
RUN ["sh", "-c", "cat <<EOF"]
