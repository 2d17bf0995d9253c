#!/usr/bin/env bash
# Regenerates src/onnx_ir/proto.rs (prost types for ONNX) from the onnx.proto shipped in the Python
# `onnx` package, so that building mdc itself needs no protoc. Run it after changing the onnx
# version below; commit the result. Needs cargo, Python 3 and network access to crates.io and PyPI.
set -euo pipefail
ONNX_VERSION=1.23.2
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# onnx.proto from the pinned onnx wheel (a private target directory: the user's site-packages is left alone).
python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$work/py" "onnx==$ONNX_VERSION"
mkdir -p "$work/gen/proto" "$work/gen/src" "$work/gen/out"
cp "$work/py/onnx/onnx.proto" "$work/gen/proto/onnx.proto"
sha=$(sha256sum "$work/gen/proto/onnx.proto" | cut -c1-16)

# A throwaway crate: protox parses the .proto in pure Rust, prost-build writes the Rust types.
cat > "$work/gen/Cargo.toml" <<'TOML'
[package]
name = "onnx-proto-gen"
version = "0.0.0"
edition = "2021"

[dependencies]
prost-build = "=0.14.6"
protox = "=0.9.1"
TOML
cat > "$work/gen/src/main.rs" <<'RS'
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new().out_dir("out").compile_fds(fds)?;
    Ok(())
}
RS
(cd "$work/gen" && cargo run --quiet --release)

{
  cat <<HEADER
// @generated - do not edit by hand.
//
// ONNX protobuf types for prost, generated once so that building mdc needs no protoc.
// Source: onnx.proto from the Python \`onnx\` package $ONNX_VERSION (site-packages/onnx/onnx.proto,
// sha256 prefix $sha), compiled by a throwaway crate with prost-build 0.14.6 and protox 0.9.1:
//
//     let fds = protox::compile(["onnx.proto"], ["proto"])?;
//     prost_build::Config::new().out_dir("out").compile_fds(fds)?;
//
// To regenerate for a newer ONNX, change ONNX_VERSION in scripts/regen-onnx-proto.sh and run it.

HEADER
  cat "$work/gen/out/onnx.rs"
} > "$repo/src/onnx_ir/proto.rs.tmp"
mv "$repo/src/onnx_ir/proto.rs.tmp" "$repo/src/onnx_ir/proto.rs"
echo "wrote src/onnx_ir/proto.rs (onnx $ONNX_VERSION, onnx.proto sha256 $sha...)"
