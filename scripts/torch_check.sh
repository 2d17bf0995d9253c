#!/usr/bin/env bash
# The checks of `mdc export torch` that need PyTorch (CI has none; it keeps the snapshots and
# py_compile). Run from the repository root:  scripts/torch_check.sh [WORK_DIR]
#
#  1. forward parity, fp32, of the emitted module with the interpreter for every model in
#     models/, with labels and without (relative difference <= 1e-5);
#  2. one training step from the same weights, batch, timesteps and noise: loss, gradients and
#     updated weights, EMA and AdamW moments match mdc's (<= 1e-5), fresh and after 3 steps;
#  3. torchrun --nproc_per_node 2 (gloo, CPU) gives the weights of one process at the same global
#     batch, up to the order of the sums;
#  4. torch.compile and torch.onnx.export on every model;
#  5. the round trip: `mdc train --stop-after 100`, 100 steps in PyTorch from its checkpoint
#     (batch 8: PyTorch's CPU step of the U-Net is slow on a small shared machine),
#     then `mdc sample`, `mdc export onnx` (onnxruntime parity) and `mdc train --resume` on the
#     result; a checkpoint of another model is refused on both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/mdc-torch-check}
rm -rf "$work" && mkdir -p "$work"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cargo build --release --quiet --bin mdc --example torch_reference
mdc=target/release/mdc
ref=target/release/examples/torch_reference
check="python3 scripts/torch_check.py"
fail=0
run() { "$@" || fail=1; }

echo "== 1. forward parity (fp32) with the interpreter"
for m in models/*.toml; do
  s=$(basename "$m" .toml)
  mkdir -p "$work/$s"
  $mdc export torch "$m" -o "$work/$s/model.py" >/dev/null
  $ref forward "$m" "$work/$s/forward.safetensors"
  run $check forward "$work/$s/model.py" "$work/$s/forward.safetensors"
done

echo "== 2. one training step against mdc's"
for m in models/unet.toml models/unet-cond.toml models/unet-attn.toml; do
  s=$(basename "$m" .toml)
  $mdc export torch "$m" -o "$work/$s/model.py" --train >/dev/null
  for warm in 0 3; do
    echo " $s, after $warm steps:"
    $ref step "$m" "$work/$s/step$warm.safetensors" "$warm" 8
    run $check step "$work/$s/train.py" "$work/$s/step$warm.safetensors"
  done
done

echo "== 3. DDP: torchrun --nproc_per_node 2 (gloo) against one process, global batch 16"
for s in unet unet-cond; do
  (cd "$work/$s" && python3 train.py --out one --steps 20 --stop-after 6 --batch 16 --sample-every 0 >/dev/null)
  (cd "$work/$s" && torchrun --nproc_per_node 2 --master_port 29517 train.py --out two --steps 20 --stop-after 6 \
     --batch 16 --sample-every 0 >/dev/null 2>"$work/$s/torchrun.err") || { cat "$work/$s/torchrun.err"; fail=1; }
  echo " $s, 6 steps:"
  run $check same "$work/$s/one/checkpoint.safetensors" "$work/$s/two/checkpoint.safetensors" 1e-5
done

echo "== 4. torch.compile and torch.onnx.export"
for m in models/*.toml; do
  run $check compile "$work/$(basename "$m" .toml)/model.py"
done

echo "== 5. round trip mdc -> PyTorch -> mdc (models/unet.toml, 300-step recipe at batch 8)"
rt=$work/roundtrip
$mdc train models/unet.toml --out "$rt/mdc" --steps 300 --batch 8 --stop-after 100 --sample-every 0 --quiet
(cd "$work/unet" && python3 train.py --resume "$rt/mdc/checkpoint.safetensors" --out "$rt/torch" --stop-after 200 \
   --sample-every 50)
$mdc sample "$rt/torch/checkpoint.safetensors" --model models/unet.toml -n 16 -o "$rt/samples.png"
$mdc export onnx models/unet.toml --weights "$rt/torch/checkpoint.safetensors" --autoguidance 1 -o "$rt/unet.onnx"
run $check onnx "$work/unet/model.py" "$rt/torch/checkpoint.safetensors" "$rt/unet.onnx"
mkdir -p "$rt/resumed" && cp "$rt/torch/checkpoint.safetensors" "$rt/resumed/"
$mdc train models/unet.toml --out "$rt/resumed" --resume --stop-after 210 --quiet && echo "  ok   mdc train --resume took the PyTorch checkpoint (to step 210)" || fail=1
echo " a checkpoint of another model:"
if $mdc sample "$rt/torch/checkpoint.safetensors" --model models/unet-attn.toml -n 1 -o "$rt/x.png" 2>"$rt/err1"; then
  echo "  FAIL mdc sampled unet-attn.toml from unet.toml's checkpoint"; fail=1
else echo "  ok   mdc: $(head -n 3 "$rt/err1" | tr '\n' ' ')"; fi
mkdir -p "$rt/other" && cp "$rt/torch/checkpoint.safetensors" "$rt/other/"
if $mdc train models/unet-attn.toml --out "$rt/other" --resume 2>"$rt/err2" >/dev/null; then
  echo "  FAIL mdc resumed unet-attn.toml from unet.toml's checkpoint"; fail=1
else echo "  ok   mdc train --resume: $(head -n 1 "$rt/err2")"; fi
if (cd "$work/unet-attn" && python3 train.py --resume "$rt/mdc/checkpoint.safetensors" --out "$rt/x" 2>"$rt/err3" >/dev/null); then
  echo "  FAIL the unet-attn script took unet.toml's checkpoint"; fail=1
else echo "  ok   train.py: $(head -n 1 "$rt/err3")"; fi

echo " a checkpoint whose metadata was edited (a digit added to data_position):"
python3 - "$rt/torch/checkpoint.safetensors" "$rt/edited.safetensors" <<'EOF'
import struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = raw[8 : 8 + n].replace(b'"data_position":"', b'"data_position":"1')
open(sys.argv[2], "wb").write(struct.pack("<Q", len(header)) + header + raw[8 + n :])
EOF
if $mdc sample "$rt/edited.safetensors" --model models/unet.toml -n 1 -o "$rt/x.png" 2>"$rt/err4"; then
  echo "  FAIL mdc sampled from an edited checkpoint"; fail=1
else echo "  ok   mdc: $(head -n 1 "$rt/err4")"; fi
if (cd "$work/unet" && python3 train.py --resume "$rt/edited.safetensors" --out "$rt/x" 2>"$rt/err5" >/dev/null); then
  echo "  FAIL train.py took an edited checkpoint"; fail=1
else echo "  ok   train.py: $(head -n 1 "$rt/err5")"; fi

if [ "$fail" = 0 ]; then echo "torch_check: all passed"; else echo "torch_check: FAILURES above"; exit 1; fi
