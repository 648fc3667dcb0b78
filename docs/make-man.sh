#!/usr/bin/env bash
# Regenerates docs/basewatch.1 from the binary's --help (every subcommand's
# too, found by walking the "Subcommands:" lists) and docs/basewatch.h2m,
# with help2man (apt-get install help2man). Also `make man` in a build tree.
#   docs/make-man.sh build/app/basewatch
set -euo pipefail
bin=$(realpath "${1:?usage: docs/make-man.sh path/to/basewatch}")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The subcommands listed in `basewatch $* --help`.
subcommands() {
  # shellcheck disable=SC2068
  "$bin" $@ --help | awk '/^Subcommands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {on=0}'
}
# Every leaf command path, depth first: "serve", "config check", ...
walk() {
  local subs
  subs=$(subcommands "$@")
  if [ -z "$subs" ]; then echo "$*"; return; fi
  for s in $subs; do walk "$@" "$s"; done
}

{
  echo "[COMMANDS]"
  for cmd in $(walk | tr ' ' '+'); do
    cmd=${cmd//+/ }
    # shellcheck disable=SC2086
    text=$("$bin" $cmd --help | sed "s#$bin#basewatch#g")
    echo ".SS basewatch $cmd"
    echo "$text" | head -n1
    echo ".PP"
    echo ".nf"
    echo "$text" | tail -n +2 | grep -v -- '-h,--help' | sed -e 's/\\/\\e/g' -e 's/^\./\\\&./'
    echo ".fi"
  done
  cat "$here/basewatch.h2m"
} > "$tmp/include.h2m"
help2man --no-info --section 1 --name "watch container base images and fire rebuilds" \
  --include "$tmp/include.h2m" --output "$here/basewatch.1" "$bin"
# help2man stamps the month; keep the page reproducible across runs.
sed -i 's/^\(\.TH [^"]*"[^"]*"\) "[^"]*"/\1 ""/' "$here/basewatch.1"
echo "wrote $here/basewatch.1"
