#!/usr/bin/env bash
# The CPU half of issue 29, in one call of about 6-8 minutes on whatever machine has AVX512_BF16
# (an AMD Zen 4/5, or an Intel Xeon with AMX, such as a GPU host's 16 cores). No Rust toolchain
# is needed there: the binaries are built here and carried.
#
#   scripts/cpu-check.sh --build   # here: cpu-bin/{mdc,tests,lib-tests,gemm,norm}, stripped (ignored by git)
#   scripts/cpu-check.sh           # there: everything below, logged to $OUT/cpu-check.log
#
#   1. the CPU (lscpu), and which bf16 kernels it runs;
#   2. the bf16 tests, which on such a CPU also run the AVX-512 (and AMX) kernels against the
#      portable reference kernel word for word and against fp32 within the bf16 bound;
#   3. on two cores (taskset), the bar's measurement: `mdc bench` of models/unet-rgb32.toml
#      (forward batch 8, training step batch 32) per bf16 kernel, alternating with PyTorch's
#      autocast bf16 and fp32 (scripts/torch_unet_bench.py), three rounds; one MDC_PROFILE run each;
#   4. the bf16 matrix-product rate on the same two cores (`gemm` bench: mdc's kernels on 2048^3
#      and the model's shapes, with the register-block sweep; PyTorch's bf16 matmul beside it),
#      and GroupNorm + SiLU (`norm` bench, PyTorch's beside it) there;
#   5. threads 1, 2, 4, 8, 16 (as many as the machine has), fp32 and bf16, beside PyTorch at the
#      same thread count, each pinned to that many cores.
# The ratios and GFLOP/s of the bar are read off the log (docs/experiments/benchmarks.md says how).
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--build" ]]; then
  set -e
  exe() { # the executable a cargo build with --message-format=json made last
    python3 -c 'import json,sys; print([j["executable"] for j in map(json.loads, sys.stdin) if j.get("executable")][-1])'
  }
  cargo build --release --bin mdc
  mkdir -p cpu-bin && cp target/release/mdc cpu-bin/mdc
  cp "$(cargo test --release --test tests --no-run --message-format=json 2>/dev/null | exe)" cpu-bin/tests
  cp "$(cargo test --release --lib --no-run --message-format=json 2>/dev/null | exe)" cpu-bin/lib-tests
  cp "$(cargo bench --bench gemm --no-run --message-format=json 2>/dev/null | exe)" cpu-bin/gemm
  cp "$(cargo bench --bench norm --no-run --message-format=json 2>/dev/null | exe)" cpu-bin/norm
  strip cpu-bin/*
  ls -la cpu-bin && du -sh cpu-bin
  exit 0
fi

LOG=${OUT:-/tmp}/cpu-check.log
exec > >(tee "$LOG") 2>&1
step() { echo; echo "=== $* ($(date +%T))"; }
BIN=cpu-bin
for b in mdc tests lib-tests gemm norm; do
  [[ -x $BIN/$b ]] || { echo "missing $BIN/$b: run scripts/cpu-check.sh --build where cargo is, and carry cpu-bin"; exit 1; }
done
MODEL=models/unet-rgb32.toml
# Logical CPUs on distinct physical cores, in order: `taskset -c $(cpus n)` pins to n whole cores
# (CPUs 0 and 1 may be two hyperthreads of one core).
cpus() { lscpu -p=CPU,CORE | grep -v '^#' | sort -s -t, -k2,2n -u | head -n "$1" | cut -d, -f1 | paste -sd,; }
CORES=$(lscpu -p=CPU,CORE | grep -v '^#' | cut -d, -f2 | sort -u | wc -l)

step "the CPU"
lscpu | grep -E '^(Model name|CPU family|Model|Thread|Core|Socket|NUMA node\(s\)|L2|L3)' || true
flags=$(grep -m1 '^flags' /proc/cpuinfo)
for f in avx512f avx512_bf16 amx_bf16 amx_tile; do
  [[ " $flags " == *" $f "* ]] && echo "has $f" || echo "no  $f"
done
echo "$CORES physical cores; two of them: CPUs $(cpus 2)"
python3 -c 'import torch; print("torch", torch.__version__)' || echo "no PyTorch: its columns will be missing"

# The bf16 kernels to compare: the default, and each one MDC_BF16_KERNEL can force here. Without
# AVX512_BF16 (bf16 would run on the slow portable kernel, and PyTorch's autocast takes seconds
# a step) only fp32 is timed, which still gives the thread scaling.
KERNELS=("default")
PRECISIONS=(fp32 bf16)
if [[ " $flags " == *" avx512_bf16 "* ]]; then
  KERNELS+=(avx512-implicit avx512-im2col)
  [[ " $flags " == *" amx_bf16 "* ]] && KERNELS+=(amx-im2col)
else
  PRECISIONS=(fp32)
  echo "no AVX512_BF16: fp32 only; the bar's bf16 measurements need a Zen 4/5 or a Xeon with AMX"
fi
TORCH_PRECISIONS=$(IFS=,; echo "${PRECISIONS[*]}")

step "bf16 tests (every kernel this CPU runs, against the portable one and fp32)"
"$BIN/lib-tests" bf16 2>&1 | tail -n 25
"$BIN/tests" bf16 2>&1 | tail -n 40

two="taskset -c $(cpus 2)"
mdc_bench() { # kernel, precision, extra env...
  local kernel=$1 precision=$2; shift 2
  local env=(env RAYON_NUM_THREADS=2 "$@")
  [[ $kernel != default ]] && env+=(MDC_BF16_KERNEL="$kernel")
  echo "--- mdc $precision, kernel $kernel $*"
  $two "${env[@]}" timeout 240 "$BIN/mdc" bench "$MODEL" --batch 8 --train-batch 32 --precision "$precision" \
    --iters 10 --warmup 2 | grep -E 'products|^forward|^train step|of which|peak|^op kind|^[a-z_0-9 ]+ +[0-9.]+ +[0-9.]+$'
}

step "the bar on two cores: mdc per bf16 kernel alternating with PyTorch, three rounds"
for round in 1 2 3; do
  echo "--- round $round"
  for p in "${PRECISIONS[@]}"; do
    if [[ $p == bf16 ]]; then for k in "${KERNELS[@]}"; do mdc_bench "$k" bf16; done; else mdc_bench default fp32; fi
  done
  $two timeout 300 python3 scripts/torch_unet_bench.py --threads 2 --iters 10 --precisions "$TORCH_PRECISIONS"
done
step "where the step goes (MDC_PROFILE), two cores"
[[ ${PRECISIONS[*]} == *bf16* ]] && for k in "${KERNELS[@]}"; do mdc_bench "$k" bf16 MDC_PROFILE=1; done
mdc_bench default fp32 MDC_PROFILE=1

step "the bf16 matrix-product rate on two cores (mdc's kernels, then PyTorch's)"
$two env RAYON_NUM_THREADS=2 timeout 300 "$BIN/gemm" --bench
[[ ${PRECISIONS[*]} == *bf16* ]] && { $two timeout 120 python3 - <<'EOF' || echo "(PyTorch's matmul failed or ran out of time: rc $?)"; }
import time, torch
torch.set_num_threads(2)
for n in (2048, 4096):
    a, b = torch.randn(n, n).bfloat16(), torch.randn(n, n).bfloat16()
    for _ in range(2):
        a @ b
    t = []
    for _ in range(5):
        s = time.perf_counter(); a @ b; t.append(time.perf_counter() - s)
    t.sort()
    print(f"torch bf16 matmul {n}^3, 2 threads: {2 * n**3 / t[2] / 1e9:.0f} GFLOP/s (median of 5)", flush=True)
EOF

step "GroupNorm + SiLU on two cores (per step of the model at batch 32)"
norm_out=$($two env RAYON_NUM_THREADS=2 timeout 120 "$BIN/norm" --bench)
echo "$norm_out" | tail -n 4 | sed 's/^/mdc: /'
# PyTorch's anchor on the shapes the bench read from the model
shapes=$(echo "$norm_out" | sed -n 's/.*--shapes \([^ ]*\).*/\1/p')
$two timeout 120 python3 scripts/torch_norm_bench.py --threads 2 --shapes "$shapes" | tail -n 1 | sed 's/^/PyTorch: /'

step "threads: mdc fp32 and bf16 beside PyTorch, each pinned to as many cores"
for n in 1 2 4 8 16; do
  (( n <= CORES )) || continue
  pin="taskset -c $(cpus "$n")"
  echo "--- $n threads"
  for p in "${PRECISIONS[@]}"; do
    $pin env RAYON_NUM_THREADS=$n timeout 240 "$BIN/mdc" bench "$MODEL" --batch 8 --train-batch 32 --precision "$p" \
      --iters 6 --warmup 2 | grep -E '^forward|^train step' | sed "s/^/mdc $p: /"
  done
  $pin timeout 300 python3 scripts/torch_unet_bench.py --threads "$n" --iters 6 --warmup 2 --precisions "$TORCH_PRECISIONS"
done
step "done"
