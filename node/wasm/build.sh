#!/usr/bin/env bash
# Rebuilds the browser's protocol core: node/wasm (and the protocol crate it uses) to
# WebAssembly, with its wasm-bindgen glue, into node/web/pkg/, which is committed (CI has
# no WebAssembly target). Then records the hash of the sources it was built from in
# node/web/pkg/SOURCES.blake3 (protocol/ and node/wasm/ sources, their locked
# dependencies); a node test (`the_committed_wasm_is_built_from_these_sources`)
# fails when they change without a rebuild.
#
# Needs: rustup target add wasm32-unknown-unknown
#        cargo install wasm-bindgen-cli --version 0.2.130   (must match node/wasm/Cargo.toml)
set -euo pipefail
cd "$(dirname "$0")/../.."
want=0.2.130
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "needs the WebAssembly target: rustup target add wasm32-unknown-unknown" >&2
    exit 1
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q " $want"; then
    echo "needs wasm-bindgen $want: cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
    cargo build -p cophr-wasm --target wasm32-unknown-unknown --release
wasm-bindgen --target web --no-typescript --out-dir node/web/pkg \
    "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/cophr_wasm.wasm"
COPHR_WRITE_WASM_SOURCES=1 cargo test -q -p cophr-node --lib -- http::browser::tests::the_committed_wasm_is_built_from_these_sources
ls -l node/web/pkg
