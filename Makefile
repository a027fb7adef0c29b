# Everything a fresh machine with Python 3.11 needs: `make run` and `make test` set it all up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install headers browser run test lint tlpi bench torture baseline bench-check bench-aa bench-fidelity bench-fio bench-network fleet-demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

NATIVE_SOURCES := iobench/loops/_native.c iobench/loops/_async.c iobench/loops/_async.h iobench/loops/_uring_net.c \
	iobench/netemu/_relay.c

# The C extension needs only a compiler and the kernel headers (io_uring and Linux AIO by raw
# system calls: no liburing or libaio); see setup.py.
$(STAMP): pyproject.toml setup.py $(NATIVE_SOURCES) | $(BIN)/python
	@$(MAKE) --no-print-directory headers
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fleet]'
	@# an editable install leaves byte-compiling to the first import, which never writes it
	@# under PYTHONDONTWRITEBYTECODE=1: compile now, as a wheel install does (start-up time)
	$(BIN)/python -m compileall -q iobench
	$(BIN)/python tools/check_native.py
	touch $@

install: $(STAMP)

## headers: the kernel headers io_uring and Linux AIO are built from (Debian linux-libc-dev, which
## libc6-dev pulls in with the compiler). Installed with apt-get as root when missing; otherwise says
## why and the build goes on without them (the async-io engines then say "built without io_uring").
headers:
	@if printf '#include <linux/io_uring.h>\n#include <linux/aio_abi.h>\n' | $${CC:-cc} -E -x c - >/dev/null 2>&1; then :; \
	elif ! command -v $${CC:-cc} >/dev/null; then echo "headers: no C compiler: the pure-Python loops only"; \
	elif [ "$$(id -u)" != 0 ]; then echo "headers: no <linux/io_uring.h>; not root, cannot apt-get install linux-libc-dev: building without io_uring/libaio"; \
	elif ! command -v apt-get >/dev/null; then echo "headers: no <linux/io_uring.h> and no apt-get: building without io_uring/libaio"; \
	else apt-get install -y -q linux-libc-dev >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q linux-libc-dev >/dev/null) || \
	     echo "headers: apt-get could not install linux-libc-dev: building without io_uring/libaio"; fi

## run: the default sweep (bench_configs/quick.toml), then its report
run: install
	$(BIN)/iobench run sweep bench_configs/quick.toml
	$(BIN)/iobench report

## browser: Debian chromium + chromium-driver for the report's browser test (needs root and apt-get;
## otherwise says why and goes on: that test then skips with the reason)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ]; then echo "browser: not root, cannot apt-get install chromium chromium-driver"; \
	elif ! command -v apt-get >/dev/null; then echo "browser: no apt-get here; install chromium + chromedriver by hand"; \
	else (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	      (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null)) || \
	      echo "browser: apt-get could not install chromium chromium-driver"; fi

## test: the whole test suite (real syscalls on small sizes)
test: install browser
	$(BIN)/python -m pytest -q

## lint: ruff, and the GitHub workflows against GitHub's workflow schema (check-jsonschema ships it:
## no network needed)
lint: install
	$(BIN)/ruff check iobench tests benchmarks tools
	$(BIN)/ruff format --check iobench tests benchmarks tools
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

## tlpi: book scale (TLPI Table 13-1); takes about 20 minutes
tlpi: install
	$(BIN)/iobench run sweep bench_configs/tlpi.toml
	$(BIN)/iobench report

# CI regression checks (bench_configs/ci.toml). A baseline is several runs: their spread is
# each case's measured noise floor. CPU: the measuring process is pinned to the last CPU.
BASELINE ?= results/baselines/ci
CI_RUNS  ?= 5
NEW_RUNS ?= 3
CPU      ?= $(shell expr $$(nproc) - 1)
# bench-check: where its runs go (default: a new temporary folder; give an empty one), extra
# `iobench compare` flags (--fail-on-noisy, --allow-missing, --threshold 10%), and a file that
# receives its exit status (see below).
NEW_OUT       ?=
COMPARE_FLAGS ?=
BENCH_STATUS  ?=

## baseline: record the CI baseline on this machine (CI_RUNS runs of ci.toml)
baseline: install
	rm -rf $(BASELINE)
	for i in $$(seq $(CI_RUNS)); do $(BIN)/iobench run sweep ci --cpu $(CPU) -q --out $(BASELINE) >/dev/null || exit 2; done
	@echo "baseline: $(CI_RUNS) runs in $(BASELINE)"

## bench-check: NEW_RUNS runs of ci.toml against the baseline; Markdown on stdout, messages on stderr
# (several candidate runs too: on a shared machine one whole run can shift by 20%). The recipe
# exits with compare's status: 0 no regression; 1 a case slower, or missing/failed in the new runs;
# 2 cannot compare (no baseline, a run failed, the baseline comes from another machine). GNU make
# itself exits 2 whenever a recipe fails, whatever the recipe's status (its last line says
# "Error 1" or "Error 2"), so the status also goes to the file BENCH_STATUS names, for CI.
bench-check: install
	@status=2; out="$(NEW_OUT)"; [ -n "$$out" ] || out=$$(mktemp -d); err=$$(mktemp); \
	if [ ! -d "$(BASELINE)" ]; then \
	  echo "bench-check: no baseline in $(BASELINE): run \`make baseline\` on this machine first" >&2; \
	else \
	  ran=0; \
	  for i in $$(seq $(NEW_RUNS)); do \
	    $(BIN)/iobench run sweep ci --cpu $(CPU) -q --out "$$out" >/dev/null \
	      || { echo "bench-check: run $$i of $(NEW_RUNS) of ci.toml failed (exit $$?)" >&2; break; }; \
	    ran=$$i; \
	  done; \
	  if [ "$$ran" = "$(NEW_RUNS)" ]; then \
	    $(BIN)/iobench compare "$(BASELINE)" "$$out" --format md $(COMPARE_FLAGS) 2>"$$err"; status=$$?; \
	    cat "$$err" >&2; \
	    if [ $$status = 2 ] && grep -q "different machines" "$$err"; then \
	      echo "bench-check: the baseline in $(BASELINE) was recorded on another machine: run \`make baseline\` on this machine first" >&2; \
	    fi; \
	  fi; \
	fi; \
	rm -f "$$err"; $(if $(BENCH_STATUS),echo $$status > "$(BENCH_STATUS)";) exit $$status

## bench-aa: the noise floor, measured: CI_RUNS runs vs NEW_RUNS more of the same code (expect 0 flagged)
bench-aa: install
	@out=$$(mktemp -d) && \
	for i in $$(seq $(CI_RUNS)); do $(BIN)/iobench run sweep ci --cpu $(CPU) -q --out $$out/base >/dev/null || exit 2; done && \
	for i in $$(seq $(NEW_RUNS)); do $(BIN)/iobench run sweep ci --cpu $(CPU) -q --out $$out/new >/dev/null || exit 2; done && \
	$(BIN)/iobench compare $$out/base $$out/new; status=$$?; \
	echo "A/A: compare exit status $$status (0: no case flagged)"; exit $$status

## bench: start-up time and peak memory of the CLI (benchmarks/startup.py), then the
## pytest-benchmark suite (benchmarks/), results saved for --benchmark-compare
bench: install
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python -m pytest benchmarks --benchmark-autosave

## torture: hostile inputs and injected faults (signals, SIGKILL, full disks, fd and memory
## limits, concurrent runs), counted per category; fails on any traceback, lost data or leftover
torture: install
	$(BIN)/python benchmarks/torture.py

## bench-fidelity: iobench (both engines) vs a plain C loop and fio, warm read/write, bs 1 B..1 MiB
# (fio from Debian's package when it can be installed; without it that column is empty)
bench-fidelity: install
	@command -v fio >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get install -y -qq fio >/dev/null 2>&1; } || echo "fio not installed: its column stays empty"
	$(BIN)/python benchmarks/fidelity/fidelity.py --dir . $(if $(CPU),--cpu $(CPU))

## bench-network: the socket experiments over an emulated network (bench_configs/network.toml: a virtual
## host in a network namespace, RTT 0.1-50 ms at 100 Mbit/s; root), then the report. About 3 minutes.
bench-network: install
	$(BIN)/iobench run sweep bench_configs/network.toml
	$(BIN)/iobench report

## bench-fio: iobench's async-io against fio, randread 4 KiB, psync/libaio/io_uring at QD 1..64, on the disk
## (O_DIRECT), in the page cache and on tmpfs (buffered), interleaved rounds (fio from Debian's package)
bench-fio: install
	@command -v fio >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -qq fio >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null && apt-get install -y -qq fio >/dev/null 2>&1; }; }; } || \
		{ echo "bench-fio: fio is not installed and cannot be here (needs root and apt-get)"; exit 2; }
	$(BIN)/python benchmarks/fio/bench_fio.py --dir . $(if $(CPU),--cpu $(CPU))

## fleet-demo: a Dask scheduler and two workers on this machine (processes: `dask scheduler`,
## `dask worker`), bench_configs/ci.toml on both at once, the fleet report (per-host series, host vs
## fleet median); stops everything it started, also on failure or Ctrl-C
FLEET_OUT ?= results/fleet
fleet-demo: install
	benchmarks/fleet_demo.sh $(BIN) $(FLEET_OUT)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
