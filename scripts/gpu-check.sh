#!/usr/bin/env bash
# The GPU check of issue 27, in one call of about 10 minutes on a CUDA machine (an H100) that has
# PyTorch with CUDA but only the CPU onnxruntime, and no network:
#   1. onnxruntime's CUDA provider from an onnxruntime-gpu wheel carried into the checkout
#      (gpu-wheels/onnxruntime_gpu-*.whl, or its parts *.whl.part-* to be joined), unless
#      ORT_DYLIB_PATH already names a GPU build; CUDA/cuDNN from PyTorch's nvidia-* packages;
#   2. the CUDA tests (MDC_TEST_CUDA=1: the compiled step on CUDA against the interpreter);
#   3. `mdc bench --engine ort --device cuda` of the training step for models/unet.toml,
#      models/unet-rgb32.toml and the seed-size scripts/unet-rgb32-base64.toml at batch 64 and 256,
#      each beside scripts/torch_train_bench.py (eager and torch.compile, fp32 and bf16 autocast);
#   4. the main job (`mdc train models/unet.toml`) with --engine ort --device cuda, scored by mdc eval.
# Binaries: gpu-bin/mdc and gpu-bin/tests when carried (built here by `scripts/gpu-check.sh --build`),
# else target/release/mdc, else cargo. Everything goes to stdout and to $OUT/gpu-check.log when $OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp}/gpu-check.log
exec > >(tee "$LOG") 2>&1

if [[ "${1:-}" == "--build" ]]; then
  # On the development machine: the binaries to carry (release mdc and the optimised test binary).
  cargo build --release --bin mdc && mkdir -p gpu-bin && cp target/release/mdc gpu-bin/mdc
  tests=$(cargo test --release --test tests --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys; print([j["executable"] for j in map(json.loads, sys.stdin) if j.get("executable")][-1])')
  cp "$tests" gpu-bin/tests && ls -la gpu-bin && exit 0
fi

step() { echo; echo "=== $* ($(date +%T))"; }
MDC=gpu-bin/mdc; [[ -x $MDC ]] || MDC=target/release/mdc
if [[ ! -x $MDC ]]; then cargo build --release --bin mdc || exit 1; MDC=target/release/mdc; fi

step "onnxruntime with CUDA"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [[ -z "${ORT_DYLIB_PATH:-}" || ! -e "$(dirname "${ORT_DYLIB_PATH:-/x}")/libonnxruntime_providers_cuda.so" ]]; then
  wheel=$(ls gpu-wheels/onnxruntime_gpu-*.whl 2>/dev/null | head -1)
  if [[ -z "$wheel" ]] && ls gpu-wheels/*.whl.part-* >/dev/null 2>&1; then
    first=$(ls gpu-wheels/*.whl.part-* | head -1); wheel=/tmp/$(basename "${first%.part-*}")
    cat gpu-wheels/*.whl.part-* > "$wheel"
  fi
  [[ -n "$wheel" ]] || { echo "no onnxruntime-gpu wheel in gpu-wheels/ and ORT_DYLIB_PATH names no GPU build"; exit 1; }
  rm -rf /tmp/ort-gpu && python3 -m zipfile -e "$wheel" /tmp/ort-gpu || exit 1
  export ORT_DYLIB_PATH=$(ls /tmp/ort-gpu/onnxruntime/capi/libonnxruntime.so* | head -1)
fi
# CUDA, cuBLAS, cuDNN and friends as PyTorch ships them.
NV=$(python3 -c 'import os, nvidia; print(":".join(sorted({os.path.join(r) for p in nvidia.__path__ for r, d, f in os.walk(p) if r.endswith("/lib")})))' 2>/dev/null)
TORCH_LIB=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="$NV:$TORCH_LIB:${LD_LIBRARY_PATH:-}"
echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH"

step "CUDA tests"
if [[ -x gpu-bin/tests ]]; then
  MDC_TEST_CUDA=1 gpu-bin/tests cuda_ --test-threads 1
else
  MDC_TEST_CUDA=1 cargo test --release --test tests cuda_ -- --test-threads 1
fi

step "training step: mdc (onnxruntime CUDA, fp32, TF32 off) beside PyTorch"
for spec in "models/unet.toml 16,32,64,64 1 28" "models/unet-rgb32.toml 32,64,128,128 3 32" \
            "scripts/unet-rgb32-base64.toml 64,128,256,256 3 32"; do
  read -r model channels cin size <<< "$spec"
  for batch in 64 256; do
    timeout 120 "$MDC" bench "$model" --engine ort --device cuda --train-batch "$batch" --iters 20 --warmup 5
    timeout 150 python3 scripts/torch_train_bench.py --channels "$channels" --in-channels "$cin" --size "$size" \
      --batch "$batch" --iters 20 --device cuda
  done
done
echo "--- TF32 on, and the conv weight gradient's other form (dilated Conv), for the choice by measurement"
"$MDC" bench models/unet-rgb32.toml --engine ort --device cuda --tf32 --train-batch 256 --iters 20 --warmup 5
MDC_CONV_WEIGHT_GRAD=dilated "$MDC" bench models/unet-rgb32.toml --engine ort --device cuda --train-batch 256 --iters 20 --warmup 5

step "the main job on CUDA, scored by mdc eval"
rm -rf /tmp/gpu-main
/usr/bin/time -f "wall %e s" "$MDC" train models/unet.toml --engine ort --device cuda --out /tmp/gpu-main --quiet
"$MDC" eval /tmp/gpu-main/samples.png
[[ -n "${OUT:-}" ]] && cp /tmp/gpu-main/samples.png /tmp/gpu-main/loss.csv "$OUT/" 2>/dev/null
step "done"
