# tlbench: `make bench` runs the main job, `make test` the tests. Both set everything up first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
SUITE  ?= suites/default.toml
ARGS   ?=
STAMP  := $(VENV)/.installed
# Intel Extension for TensorFlow needs TensorFlow 2.15: its own environment (requirements-itex.txt),
# whose interpreter runs the itex backends' workers.
ITEX_VENV  := .venv-itex
ITEX_STAMP := $(ITEX_VENV)/.installed
RESULTS  ?= results
BASELINE ?=

.PHONY: install itex bench quick serve tune tune-check allocators test lint clean validate-projection bench-ci drift-rates microbench two-hosts \
	chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,keras3]'
	touch $@

install: $(STAMP)

$(ITEX_STAMP): requirements-itex.txt pyproject.toml
	$(PYTHON) -m venv $(ITEX_VENV)
	$(ITEX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(ITEX_VENV)/bin/python -m pip install --quiet -r requirements-itex.txt
	$(ITEX_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

itex: $(ITEX_STAMP)

bench: install itex  ## run a suite (default: suites/default.toml), write results/, print the summary
	$(BIN)/tlbench run $(SUITE) $(ARGS)

quick: install itex
	$(BIN)/tlbench run suites/quick.toml $(ARGS)

serve: install itex  ## serving under MLPerf LoadGen on every stack (suites/serving.toml)
	$(BIN)/tlbench run suites/serving.toml $(ARGS)

lint: install
	$(BIN)/ruff check bench tests

# The suite, then the micro-benchmarks run once each, untimed, so that they cannot rot unseen.
# Test files run in 2 processes (pytest-xdist, one file per process at a time, so a module's
# end-to-end fixture runs once): tests assert behaviour, never speed, and much of their time is
# single-threaded (imports, graph tracing, model building).
test: install itex lint chromium allocators
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=12
	$(BIN)/python -m pytest tests/benchmarks -o addopts=-ra --benchmark-disable -q

# Debian's headless Chromium, for the test that opens the HTML report and screenshots it.
# Installed when missing and possible (root, apt); otherwise that test is skipped with the reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null 2>&1 && apt-get update -qq >/dev/null \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium is not installed and could not be: the report screenshot test will skip"

# Debian's jemalloc and tcmalloc, the allocators `tlbench tune` tries through LD_PRELOAD (as
# Intel's launchers offer them). Installed when missing and possible (root, apt); otherwise the
# allocator knob offers glibc's alone and says why.
allocators:
	@{ [ -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] \
	  && [ -e /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 ]; } || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null 2>&1 && apt-get update -qq >/dev/null \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2 \
	  libtcmalloc-minimal4 >/dev/null; } \
	  || echo "jemalloc and tcmalloc are not installed and could not be: tune tries glibc's malloc only"

# Each stack at its best on this box: a search within TUNE_BUDGET over each paper stack's knobs
# for inference and transfer extraction (throughput), then tf-onednn's training, each winner
# proven against the default in interleaved processes; tuned suites under results/. About 2 h
# 10 min on a 2-core machine: a target's proof alone is ten full runs (5 rounds x default and
# tuned), its default one more, and the search about ten short trials.
TUNE_BUDGET ?= 108m
TUNE_TRAINING_BUDGET ?= 22m
tune: install itex allocators
	$(BIN)/tlbench tune $(SUITE) --backend tf-stock --backend tf-onednn --backend itex \
	  --backend openvino --scenario inference --scenario transfer --budget $(TUNE_BUDGET) $(ARGS)
	$(BIN)/tlbench tune $(SUITE) --backend tf-onednn --scenario full_training \
	  --objective training --budget $(TUNE_TRAINING_BUDGET) $(ARGS)

# The search of `tlbench tune` judged against a whole grid (about 40 minutes here): OpenVINO f32
# inference, hint none, streams 1-2, requests 1-4, batch 1-32 (48 configurations) each measured,
# the search given a third of the grid's time, then the two picks re-measured interleaved.
tune-check: install
	$(BIN)/tlbench tune suites/tune-check.toml --check --budget 90m --knob openvino.hint=none \
	  --knob openvino.streams=1,2 --knob openvino.requests=1,2,3,4 \
	  --knob inference.batch_size=1,2,4,8,16,32 --knob placement=all --knob allocator=glibc $(ARGS)

# The CI regression suite. With BASELINE_REF=<git ref> (e.g. HEAD~1): that ref's tree and
# environment built in the job (cached) and measured interleaved with this tree, round by round
# (tlbench ab --a-ref), judged pair by pair, training time the primary figure: the machine's
# drift between hours cancels. With BASELINE=<result file>: its HTML report and the comparison
# with a result stored from another hour — blind to the machine's drift in between (the
# comparison says so). Fails when a run failed or a figure is significantly slower beyond 5%
# (COMPARE_ARGS: more `tlbench compare` / `tlbench ab` options, e.g. --alpha 0.05).
COMPARE_ARGS ?=
BASELINE_REF ?=
bench-ci: install itex
	@stamp=$$(mktemp); \
	if [ -n "$(BASELINE_REF)" ]; then \
	  $(BIN)/tlbench ab suites/ci.toml --a-ref "$(BASELINE_REF)" --b $(BIN)/python \
	    --out $(RESULTS) $(ARGS) $(COMPARE_ARGS); ab=$$?; \
	  a=$$(find $(RESULTS) -name '*_ci-A.json' -newer "$$stamp" | sort | tail -n 1); \
	  b=$$(find $(RESULTS) -name '*_ci-B.json' -newer "$$stamp" | sort | tail -n 1); rm -f "$$stamp"; \
	  if [ -z "$$a" ] || [ -z "$$b" ]; then echo "bench-ci: the ab job wrote no result pair" >&2; \
	    [ $$ab -ne 0 ] && exit $$ab; exit 2; fi; \
	  mkdir -p reports; \
	  $(BIN)/tlbench compare "$$a" "$$b" --markdown $(COMPARE_ARGS) > "reports/$$(basename "$$b" .json).verdict.md"; \
	  exit $$ab; fi; \
	$(BIN)/tlbench run suites/ci.toml --out $(RESULTS) $(ARGS); run=$$?; \
	new=$$(find $(RESULTS) -name '*_ci.json' -newer "$$stamp" | sort | tail -n 1); rm -f "$$stamp"; \
	if [ -z "$$new" ]; then echo "bench-ci: the suite wrote no result file" >&2; \
	  [ $$run -ne 0 ] && exit $$run; exit 2; fi; \
	if [ -z "$(BASELINE)" ]; then $(BIN)/tlbench report "$$new"; exit $$run; fi; \
	$(BIN)/tlbench report "$$new" --baseline "$(BASELINE)" $(COMPARE_ARGS) || exit $$?; \
	mkdir -p reports; \
	$(BIN)/tlbench compare "$(BASELINE)" "$$new" --json $(COMPARE_ARGS) > "reports/$$(basename "$$new" .json).compare.json"; \
	cmp=$$?; \
	if [ $$cmp -ne 0 ]; then echo "bench-ci: tlbench compare exited $$cmp (1: regression, 2: unusable input)" >&2; exit $$cmp; fi; \
	exit $$run

# How often the paired verdict raises a false alarm on this machine, and how often it catches a
# known slowdown: one interleaved `tlbench ab` job of the CI suite, both sides on this
# environment, side B's training made SLOWDOWN slower on purpose (the test-only
# TLBENCH_INJECT_SLOWDOWN), REPEATS rounds; then `tlbench rates` judges HALF pairs at a time:
# A/A (round k of A against round k + 1) and A/B (A and B of the same rounds)
# (RATES_ARGS: more `tlbench rates` options, e.g. --alpha 0.05 --trials 20).
# About 38 minutes for 12 rounds on a 2-vCPU VM.
SLOWDOWN ?= 0.10
REPEATS ?= 12
HALF ?= 5
RATES_ARGS ?=
drift-rates: install
	@stamp=$$(mktemp); \
	$(BIN)/tlbench ab suites/ci.toml --a $(BIN)/python --b $(BIN)/python \
	  --b-env TLBENCH_INJECT_SLOWDOWN=$(SLOWDOWN) --repeats $(REPEATS) --out $(RESULTS)/drift $(ARGS); \
	a=$$(find $(RESULTS)/drift -name '*_ci-A.json' -newer "$$stamp" | sort | tail -n 1); \
	b=$$(find $(RESULTS)/drift -name '*_ci-B.json' -newer "$$stamp" | sort | tail -n 1); rm -f "$$stamp"; \
	if [ -z "$$a" ] || [ -z "$$b" ]; then echo "drift-rates: the ab job wrote no result pair" >&2; exit 2; fi; \
	$(BIN)/tlbench rates "$$a" "$$b" --half $(HALF) $(RATES_ARGS)

# pytest-benchmark micro-benchmarks of the small model (tests/benchmarks; `make test` only runs
# them once each, untimed).
# make microbench ARGS=--benchmark-save=base
# make microbench ARGS="--benchmark-compare --benchmark-compare-fail=median:10%"
# Data-parallel training across two network hosts on this machine (root): two network
# namespaces joined by a veth pair, one worker in each through the cluster file (bench.netns).
# make two-hosts ARGS="--backend torch"     (SUITE: suites/scaling.toml unless given)
two-hosts: SUITE = suites/scaling.toml
two-hosts: install
	$(BIN)/python -m bench.netns $(SUITE) --out $(RESULTS)/two-hosts $(ARGS)

# Does the projection hold? Full training measured in full, beside its own projection.
validate-projection: install
	$(BIN)/tlbench run suites/validate-projection.toml $(ARGS)

microbench: install
	$(BIN)/python -m pytest tests/benchmarks -o addopts=-ra --benchmark-only $(ARGS)

clean:
	rm -rf $(VENV) $(ITEX_VENV) .pytest_cache .ruff_cache *.egg-info
