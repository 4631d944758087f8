# binlake: the two commands of the quick start, and the developer's others.
#
#   make demo    run binlake end to end on an embedded default (see README)
#   make test    every test, unit and integration, against real MariaDB and Kafka
#   make bench   the benchmarks: criterion micro-benchmarks and the end-to-end ones
#                (benches/pipeline.rs) against the real services
#   make lint    cargo fmt --check and clippy -D warnings
#   make fuzz    mutated binlog files through the reader and decoder, many cases
#
# Builds go to a cache outside the clone, so a fresh clone on a machine that has built
# binlake before does not rebuild arrow, librdkafka & co. from scratch.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/binlake/target
export CARGO_TERM_COLOR ?= never
CARGO ?= cargo
SERVICES := tests/services

.PHONY: all build deps checkout services-start services-stop test lint fuzz bench demo clean

all: build

deps: checkout
	@$(SERVICES)/build-deps.sh

# The shared build cache may hold binlake's own crates built from another checkout (cargo
# hashes workspace members by their path inside the workspace, and tests embed
# CARGO_MANIFEST_DIR): rebuild them, and only them, when this checkout is not the one
# that built them last.
checkout:
	@stamp="$$CARGO_TARGET_DIR/.binlake-checkout"; \
	if [ "$$(cat "$$stamp" 2>/dev/null)" != "$(CURDIR)" ]; then \
	  $(CARGO) clean -q -p binlake -p binlake-core -p binlake-mysql -p binlake-kafka -p binlake-lake 2>/dev/null || true; \
	  mkdir -p "$$CARGO_TARGET_DIR" && echo "$(CURDIR)" > "$$stamp"; \
	fi

build: deps
	$(CARGO) build --release --bin binlake

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The property test of hostile binlog files (connectors/mysql/src/binlog/fuzz_tests.rs)
# with a million cases instead of make test's 20 000 (a few minutes).
FUZZ_CASES ?= 1000000
fuzz: checkout
	BINLAKE_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test -p binlake-mysql --lib -- binlog::fuzz_tests --nocapture

services-start:
	@$(SERVICES)/all.sh start

services-stop:
	@$(SERVICES)/all.sh stop

# Starts the services that are not running, runs every test, stops what it started,
# and fails when any test failed.
test: deps
	@started=""; \
	for s in mariadb kafka s3 python; do \
	  $(SERVICES)/$$s.sh status >/dev/null 2>&1 || started="$$started $$s"; \
	done; \
	for s in $$started; do $(SERVICES)/$$s.sh start || exit 1; done; \
	eval "$$($(SERVICES)/all.sh env)"; \
	rc=0; \
	$(CARGO) test --workspace --all-targets || rc=$$?; \
	tests/helm/check.sh "$$CARGO_TARGET_DIR/debug/binlake" || rc=$$?; \
	for s in $$started; do $(SERVICES)/$$s.sh stop || true; done; \
	exit $$rc

# Criterion micro-benchmarks, then the end-to-end ones against the real services
# (benches/pipeline.rs), which need the release binary.
bench: deps
	@$(SERVICES)/all.sh start
	$(CARGO) build --release --bin binlake
	@eval "$$($(SERVICES)/all.sh env)"; $(CARGO) bench --workspace

# A private MariaDB with a sample shop schema and a write workload, `binlake run` into
# ./demo-data, then status and query output (demo/demo.sh says what it does).
demo: deps
	$(CARGO) build --bin binlake
	@demo/demo.sh

clean:
	$(CARGO) clean
