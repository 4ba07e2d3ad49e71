#!/usr/bin/env bash
# The issue-14 GPU checks as one script for a lent GPU machine (see docs/performance.md). Run from the repository
# root with the wheels of `make gpu-wheels` in .whl/ (carry: [".whl"]); every step has its own timeout and writes
# to $OUT (default ./gpu-out), so what finished comes back even when a later step runs out of time.
#   bash tools/gpu_check.sh               the benchmarks and the CUDA tests: timeouts sum to 570 s, one device call
#   bash tools/gpu_check.sh suite train_compiled
#                                        the whole suite with the GPU visible (pytest -n 8), the trainer compiled
#   bash tools/gpu_check.sh NAME...       only those steps
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
    export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.csv" 2>&1
step() {  # step NAME SECONDS COMMAND...: run COMMAND with a timeout, stdout to $OUT/NAME.json, stderr to NAME.log
    local name=$1 seconds=$2
    shift 2
    timeout "$seconds" "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
    echo "$name: exit $?" | tee -a "$OUT/steps.txt"
}
run_step() {
    case $1 in
    model) step model 100 python3 tools/benchmark.py model --device cuda --models small,base --frames 16 \
        --img-size 224 --batch 16 --repeats 10 --warmup 3 --matmul-size 8192 --json ;;
    # the train.compile lever on the isolated step (MFU): ViT-B scratch and SSAT 0.95, each compiled first
    model_compiled) step model_compiled 150 python3 tools/benchmark.py model --device cuda --models base \
        --ratios 0.95 --frames 16 --img-size 224 --batch 16 --repeats 10 --warmup 3 --matmul-size 8192 \
        --compile --json ;;
    train) step train 110 python3 tools/benchmark.py train --device cuda --config video/dfdc_videomae_095 --batch 16 \
        --num-workers 8 --steps 20 --warmup 5 --json ;;
    cuda_tests) step cuda_tests 170 python3 -m pytest -v -ra -m cuda tests/test_cuda.py ;;
    # the train.compile lever end to end (compiled during the warm-up updates)
    train_compiled) step train_compiled 120 python3 tools/benchmark.py train --device cuda \
        --config video/dfdc_videomae_095 --batch 16 --num-workers 8 --steps 20 --warmup 5 \
        --opts train.compile=true --json ;;
    # the node's CPUs: >= 200 clips/s?
    loader) step loader 40 python3 tools/benchmark.py loader --format tar --workers 1 4 8 12 --json ;;
    suite) step suite 420 python3 -m pytest -n 8 -v -ra ;;
    *) echo "unknown step $1" | tee -a "$OUT/steps.txt" ;;
    esac
}
for name in ${*:-model model_compiled train cuda_tests loader}; do
    run_step "$name"
done
