#!/bin/sh
# Rebuilds guest-python/cello/wasi/_pydantic_core-$VERSION.wasm.xz: pydantic-core's
# extension as a WebAssembly shared library for componentize-py's CPython 3.14.
#
# Needs rustup with the wasm32-wasip2 target and pip; no WASI SDK and no WASI
# CPython: pyo3 knows CPython's ABI (the config below), the extension leaves
# libc's and libpython's symbols undefined, and componentize-py resolves
# them against its own libc.so and libpython3.14.so when it links the
# component. Rust's std for wasm32-wasip2 is built position-independent,
# so `--shared` links without rebuilding it.
#
# After a rebuild, put the printed SHA-256 into cello/wasi_packages.py
# (PYDANTIC_CORE_SHA256), and pin PYDANTIC to the pydantic that requires
# this pydantic-core, there and in guest-python/requirements.txt.
set -eu

VERSION=2.50.5
SDIST_SHA256=1e740886083ff95530d694e6a3f09ed914bcf92a496d16acd307c6c3484fc36d
TOOLCHAIN=1.95.0

here=$(cd "$(dirname "$0")" && pwd)
out="$here/../cello/wasi/_pydantic_core-$VERSION.wasm.xz"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rustup toolchain install --profile minimal --target wasm32-wasip2 "$TOOLCHAIN"
python3 -m pip download --quiet --no-deps --no-binary :all: \
    "pydantic-core==$VERSION" --dest "$work"
echo "$SDIST_SHA256  $work/pydantic_core-$VERSION.tar.gz" | sha256sum -c -
tar -xzf "$work/pydantic_core-$VERSION.tar.gz" -C "$work"

cat > "$work/pyo3.cfg" <<EOF
implementation=CPython
version=3.14
shared=true
abi3=false
lib_name=python3.14
pointer_width=32
build_flags=
suppress_build_script_link_lines=true
EOF
# rustc asks for libc by name; its symbols stay imports, so an empty one.
mkdir "$work/lib" && ar rcs "$work/lib/libc.a"

# --no-export-dynamic: export only what the module needs (PyInit__pydantic_core),
# so the linker drops the rest of std and its WASI imports: left in, std's
# wasi:http and wasi:sockets imports would be the component's too.
(cd "$work/pydantic_core-$VERSION" &&
    PYO3_CONFIG_FILE="$work/pyo3.cfg" \
    CARGO_TARGET_DIR="$work/target" \
    RUSTFLAGS="-Clink-self-contained=n -Clink-args=--skip-wit-component \
-Clink-args=--shared -Clink-args=--experimental-pic -Clink-args=--no-export-dynamic \
-L$work/lib" \
    cargo "+$TOOLCHAIN" build --release --lib --target wasm32-wasip2)

built="$work/target/wasm32-wasip2/release/_pydantic_core.wasm"
sha256sum "$built"
xz -9 -c "$built" > "$out"
echo "wrote $out"
