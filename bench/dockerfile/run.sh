#!/usr/bin/env bash
# bench/dockerfile: `basewatch scan --json` against dockerfile-ast (npm) on
# the same generated Dockerfiles, in one hyperfine run, then graph building
# for 10,000 projects. Run by hand from anywhere:
#   bench/dockerfile/run.sh BUILD_DIR [COUNT]
# BUILD_DIR is a build configured with -DBASEWATCH_BENCH=ON (basewatch and
# graph_bench built). Needs python3, node/npm and hyperfine (apt).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run.sh BUILD_DIR [COUNT]}
count=${2:-5000}
files=${BENCH_DIR:-/tmp/bw-bench-dockerfiles-$count}

[ -d "$here/npm/node_modules/dockerfile-ast" ] || (cd "$here/npm" && npm install --no-audit --no-fund)
rm -rf "$files"
python3 "$here/gen_dockerfiles.py" --count "$count" --out "$files"

# Both sides once, to check they read every file (and to warm the page cache).
"$build/app/basewatch" scan --json "$files" > "$files.basewatch.json"
node "$here/npm/extract_froms.js" "$files" > "$files.ast.json"
python3 - "$files.basewatch.json" "$files.ast.json" <<'PY'
import json, sys
bw = json.load(open(sys.argv[1]))
ast = json.load(open(sys.argv[2]))
errors = [f["error"] for f in bw["files"] if f["error"]]
print("basewatch: %d files, %d images (%d failed)" % (len(bw["files"]), sum(len(f["images"]) for f in bw["files"]), len(errors)))
print("dockerfile-ast: %d files, %d FROMs" % (len(ast["files"]), sum(len(f["images"]) for f in ast["files"])))
assert not errors, errors[:3]
assert len(bw["files"]) == len(ast["files"])
PY

hyperfine --warmup 2 --runs ${RUNS:-10} -N \
  --export-markdown "$files.md" \
  -n "basewatch scan --json" "$build/app/basewatch scan --json $files" \
  -n "dockerfile-ast (node)" "node $here/npm/extract_froms.js $files"

# CPU time of each side (task-clock), steadier than wall time on a shared machine.
if command -v perf > /dev/null; then
  perf stat -r 5 "$build/app/basewatch" scan --json "$files" 2>&1 > /dev/null | grep -E "task-clock|elapsed"
  perf stat -r 3 node "$here/npm/extract_froms.js" "$files" 2>&1 > /dev/null | grep -E "task-clock|elapsed"
fi

"$build/bench/dockerfile/scan_bench" "$files" 10
"$build/bench/dockerfile/graph_bench" 10000 10
