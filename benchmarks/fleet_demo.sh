#!/usr/bin/env bash
# make fleet-demo: a Dask scheduler and two workers on this machine (processes, each worker a
# "host": demo-a, demo-b), bench_configs/ci.toml on both at once, the fleet report; everything
# it started is stopped on the way out, whether the run worked or not.
# Usage: benchmarks/fleet_demo.sh BIN OUT   (BIN: the venv's bin folder; OUT: results folder)
set -u
BIN=${1:?BIN}
OUT=${2:?OUT}
work=$(mktemp -d)
pids=()

stop() {
  # Each process leads its own process group (setsid): the group takes the worker process a
  # nanny spawned too. Workers first (they would try to reconnect), then the scheduler; TERM,
  # and KILL for a group still there after 10 s.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM -- "-${pids[i]}" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM HUP

wait_for() {  # wait_for FILE TEXT NAME: until FILE contains TEXT (30 s)
  for _ in $(seq 300); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "fleet-demo: $3 did not start; its log:" >&2
  tail -20 "$1" >&2
  exit 2
}

# Recommended worker settings for measuring hosts (iobench also stops these at run start).
export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False
export DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL=1h
export DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__GIL__ENABLED=False

setsid "$BIN/dask" scheduler --host 127.0.0.1 --port 0 --dashboard-address :0 \
  --scheduler-file "$work/scheduler.json" >"$work/scheduler.log" 2>&1 &
pids+=($!)
wait_for "$work/scheduler.json" address "the scheduler"
address=$("$BIN/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["address"])' "$work/scheduler.json")
for name in demo-a demo-b; do
  setsid "$BIN/dask" worker "$address" --name "$name" --nthreads 1 --host 127.0.0.1 \
    --dashboard-address :0 >"$work/$name.log" 2>&1 &
  pids+=($!)
done
for name in demo-a demo-b; do wait_for "$work/$name.log" "Registered to" "worker $name"; done
echo "fleet-demo: scheduler $address, workers demo-a and demo-b (pids ${pids[*]})"

mkdir -p "$OUT"
before=$(ls -d "$OUT"/fleet-* 2>/dev/null)
started=$(date +%s)
"$BIN/iobench" run sweep ci --cluster "$address" --out "$OUT"
status=$?
echo "fleet-demo: the fleet run took $(($(date +%s) - started)) s (exit $status)"
fleet=$(comm -13 <(echo "$before") <(ls -d "$OUT"/fleet-* 2>/dev/null) | tail -1)
if [ -z "$fleet" ]; then
  echo "fleet-demo: no fleet folder was written" >&2
  exit 2
fi
"$BIN/iobench" report "$fleet" || exit 2
echo "fleet-demo: report in $fleet/report (report.html, report.md)"
exit "$status"
