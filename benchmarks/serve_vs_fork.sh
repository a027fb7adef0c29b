#!/bin/bash
# sock-buffer's TCP cases with the receiver forked here against the same cases with the receiver
# on a loopback `iobench serve`, interleaved (3 rounds), then each mode's median throughput and
# the ratio. Usage: benchmarks/serve_vs_fork.sh [OUT] (default /tmp/serve-vs-fork).
set -euo pipefail
BIN=${BIN:-$(dirname "$0")/../.venv/bin}
OUT=${1:-/tmp/serve-vs-fork}
rm -rf "$OUT"; mkdir -p "$OUT"
"$BIN/iobench" serve --port 0 >"$OUT/serve.line" 2>"$OUT/serve.err" &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$OUT/serve.line" && break; sleep 0.1; done
PORT=$(sed -E 's/.*:([0-9]+) .*/\1/' "$OUT/serve.line")
ARGS=(sock-buffer --transport tcp --buffers unset,rcvbuf --bufsize 64KiB --transfer 64MiB
      --warmup 1 --min-reps 10 --max-reps 10 -q)
for round in 1 2 3; do
  "$BIN/iobench" run "${ARGS[@]}" --out "$OUT/fork-$round" >/dev/null 2>&1
  "$BIN/iobench" run "${ARGS[@]}" --peer "127.0.0.1:$PORT" --out "$OUT/serve-$round" >/dev/null 2>&1
done
"$BIN/python" - "$OUT" <<'PY'
import glob, statistics, sys
import iobench
out, found = sys.argv[1], {}
for run in sorted(glob.glob(f"{out}/*-*/*")):
    mode = run.split("/")[-2].split("-")[0]
    for _, row in iobench.load(run).summary.iterrows():
        found.setdefault((row.buffers, mode), []).append(row.bytes_per_s / 2**30)
for buffers in ("unset", "rcvbuf"):
    fork, serve = found[(buffers, "fork")], found[(buffers, "serve")]
    print(f"{buffers:6}: fork {statistics.median(fork):.2f} GiB/s {[round(v, 2) for v in fork]}, "
          f"serve {statistics.median(serve):.2f} GiB/s {[round(v, 2) for v in serve]}, "
          f"serve/fork {statistics.median(serve) / statistics.median(fork):.2f}")
PY
