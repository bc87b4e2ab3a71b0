#!/usr/bin/env bash
# Everything a lent GPU machine (kind nvidia-h200: Python 3.12, torch 2.11+cu130, no DeePMD-kit,
# no network) should check and measure for dpqtb, in ONE device call of at most ~8 minutes:
#
#   run(command="bash scripts/gpu_session.sh", carry=[".whl"], timeout_s=600)
#
# .whl/ comes from scripts/fetch_gpu_wheels.sh (run it on the development machine first).
# Steps, most valuable first; each is timed and guarded by `timeout`, and a step that no longer fits
# the run's budget (DPQTB_GPU_BUDGET_S, default 480 s) is skipped:
#   setup       .whl/*.whl -> /tmp/site (pip --target), MPICH -> /tmp/mpi, libcudart.so.12 -> /tmp/cu12;
#               dpqtb itself from src/ (PYTHONPATH)
#   check       torch + CUDA, `import deepmd.pt` with its PyTorch ops                -> $OUT/env.json
#               (if the wheel's ops do not load, they are stubbed out in /tmp/site and the run
#               goes on without them: uncompressed models need none; `builtin` then fails)
#   bench       DP force call, dpqtb vs DeepPot.eval on the GPU, 352 / 5,500 / 44,000 atoms
#               (chunk 512, as benchmarks/results/deepmd_cpu.json)               -> $OUT/deepmd_cuda.json
#   tests       tests/test_potential_deepmd.py with DPQTB_TEST_DEVICE=cuda (float64; output in log.txt)
#   builtin     builtin:lah10 (compressed: DeePMD-kit's CUDA kernels) GPU vs CPU at 44/352 atoms,
#               s/call at 5,500/44,000 atoms                                       -> $OUT/builtin_cuda.json
#   thermostat  benchmarks/bench_thermostat.py --device cuda (44,000 atoms)       -> $OUT/thermostat_cuda.json
#   npt         benchmarks/bench_npt.py --device cuda: builtin:lah10 NPT vs NVT step, 5,500 / 44,000 atoms
#                                                                                   -> $OUT/npt_cuda.json
#   large       dpqtb alone, chunk 8192: 352,000 atoms (the largest the budget allows), then 44,000
#                                                                                   -> $OUT/deepmd_cuda_large.json
#   train       (only when named in DPQTB_GPU_STEPS) DPQTB_GPU_TRAIN_MEMBERS (default 0) of the carried
#               `dpqtb train` directory DPQTB_GPU_TRAIN_DIR (exported data/, sel_statistics.json; made here by
#               `dpqtb train CONFIG --out DIR --members 0` stopped after its export, or any partial run), resumed
#               from its checkpoint, frozen and compressed on the GPU; the session records host and device
#               (state.json, metrics.json "sessions"; the card's "trained_on")   -> $OUT/train/<DIR>
#               e.g. DPQTB_GPU_STEPS=setup,check,train DPQTB_GPU_TRAIN_DIR=models/v3 bash scripts/gpu_session.sh
#   trpmd64     verdict run: TRPMD 200 K, 44-atom LaH10, 64 then 32 beads, 2 + 2 ps each (the bead check
#               of the small verdict, docs/paper.md; resumable: a timed-out point resumes next session)
#               -> $OUT/sweeps/verdict_gpu (commit it as data/paper/sweeps/verdict_gpu)
# Everything printed also goes to $OUT/log.txt; $OUT/steps.tsv lists each step's exit code and time.
#
# Environment:
#   DPQTB_GPU_STEPS=check,bench     only these steps (comma list; default: all, in the order above)
#   DPQTB_GPU_BUDGET_S=480          wall-clock budget of the whole script (s); it ends within ~budget + 15 s
#   DPQTB_GPU_DRYRUN=1              CPU plumbing check on the development machine: device cpu, 44-atom
#                                   cases, .venv/bin/python, OUT=/tmp/gpu_dry; the setup step runs only
#                                   if DPQTB_GPU_WHEELS names a wheel folder (for this Python)
#   DPQTB_GPU_PYTHON (python3; dry run .venv/bin/python)   DPQTB_GPU_WHEELS (.whl)   DPQTB_GPU_WORK (/tmp)
set -euo pipefail
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # should anything import JAX there, it must not take 75% of the GPU
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SELF=$ROOT/scripts/gpu_session.sh

# ------------------------------------------------------------------------------------------ steps
# (each runs in its own `bash gpu_session.sh --step NAME` under timeout, with the driver's exports)

step_setup() {
    ls "$WHEELS"/*.whl >/dev/null
    rm -rf "$SITE" "$MPI" "$CU12"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl
    if ls "$WHEELS"/mpi/*.whl >/dev/null 2>&1; then
        # --prefix, not --target: the wheel's libmpi.so.12 lies outside site-packages and deepmd
        # finds it through mpich's RECORD (deepmd/pt/cxx_op.py: load_mpi_library)
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --prefix "$MPI" "$WHEELS"/mpi/*.whl
    fi
    if ls "$WHEELS"/cu12/*.whl >/dev/null 2>&1; then
        "$PY" - "$CU12" "$WHEELS"/cu12/*.whl <<'PYEOF'
import os, sys, zipfile
dest = sys.argv[1]
os.makedirs(dest, exist_ok=True)
for whl in sys.argv[2:]:
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if "/lib/libcudart.so" in name:
                with open(os.path.join(dest, os.path.basename(name)), "wb") as f:
                    f.write(z.read(name))
print("libcudart:", sorted(os.listdir(dest)))
PYEOF
    fi
    du -sh "$SITE" "$MPI" 2>/dev/null || true
}

step_check() {
    "$PY" scripts/gpu_session_checks.py env --device "$DEV" --out "$OUT/env.json"
}

nl_backend() {  # the device-built neighbour list unless the check step found it unequal to the host one
    "$PY" - "$OUT/env.json" <<'PYEOF' 2>/dev/null || echo vesin
import json, sys
ok = json.load(open(sys.argv[1])).get("neighbour_list_device_equals_host")
print("auto" if ok is True else "vesin")
PYEOF
}

step_bench() {
    local nlb
    nlb=$(nl_backend)
    echo "neighbour-list backend for the benchmark: $nlb"
    "$PY" benchmarks/bench_deepmd.py --device "$DEV" --sizes "$BENCH_SIZES" --chunk-atoms 512 --nl-backend "$nlb" \
        --repeats "$REPEATS" --threads "$THREADS" --case-timeout-s "$CASE_TIMEOUT" \
        --deadline-s $((STEP_LIMIT - 10)) --out "$OUT/deepmd_cuda.json"
}

step_tests() {
    export DPQTB_NL_BACKEND=$(nl_backend)  # DeepPotential's default: the device list only if checked equal
    local k=()
    [ -n "${TEST_K:-}" ] && k=(-k "$TEST_K")
    DPQTB_TEST_DEVICE=$DEV "$PY" -m pytest -q -rfEs -p no:cacheprovider tests/test_potential_deepmd.py "${k[@]}"
}

step_builtin() {
    export DPQTB_NL_BACKEND=$(nl_backend)  # DeepPotential's default: the device list only if checked equal
    "$PY" scripts/gpu_session_checks.py builtin --device "$DEV" --compare-sizes "$BUILTIN_COMPARE" \
        --time-sizes "$BUILTIN_TIME" --time-chunk-atoms 4096 --repeats "$REPEATS_SHORT" --out "$OUT/builtin_cuda.json"
}

step_thermostat() {
    "$PY" benchmarks/bench_thermostat.py --device "$DEV" --cells "$THERMO_CELLS" --steps "$THERMO_STEPS" \
        --threads "$THREADS" --dp-json "$OUT/deepmd_cuda.json" --out "$OUT/thermostat_cuda.json"
}

step_npt() {
    export DPQTB_NL_BACKEND=$(nl_backend)
    # shellcheck disable=SC2086  # the size and step lists are word lists
    "$PY" benchmarks/bench_npt.py --device "$DEV" --sizes $NPT_SIZES --steps $NPT_STEPS --repeat 2 \
        --threads "$THREADS" --out "$OUT/npt_cuda.json"
}

step_large() {
    export DPQTB_NL_BACKEND=$(nl_backend)  # DeepPotential's default: the device list only if checked equal
    "$PY" benchmarks/bench_deepmd.py --device "$DEV" --methods dpqtb --sizes "$LARGE_SIZES" --nl-backend "$(nl_backend)" \
        --chunk-atoms "$LARGE_CHUNK" --repeats "$REPEATS_SHORT" --threads "$THREADS" \
        --case-timeout-s $((STEP_LIMIT - 15)) --deadline-s $((STEP_LIMIT - 10)) --out "$OUT/deepmd_cuda_large.json"
}

step_train() {  # ensemble members of a carried `dpqtb train` directory (its data/ exported; resumable)
    local src=${DPQTB_GPU_TRAIN_DIR:?set DPQTB_GPU_TRAIN_DIR to a dpqtb train directory carried to this machine}
    local dst
    dst="$OUT/train/$(basename "$src")"
    mkdir -p "$OUT/train"
    [ -d "$dst" ] || cp -r "$src" "$dst"  # trained here, returned through $OUT (the latest checkpoint too)
    export PATH="$SITE/bin:$(dirname "$PY"):$PATH"  # the wheel's `dp`
    local members=${DPQTB_GPU_TRAIN_MEMBERS:-0} rc=0
    trap 'prune_checkpoints "$dst" "$members"' TERM  # cut short by the step limit: still prune, then go
    "$PY" -c "import sys; from dpqtb.cli import main; sys.exit(main(sys.argv[1:]))" \
        train "$dst/config.toml" --out "$dst" --members "$members" --reuse-data --no-progress || rc=$?
    prune_checkpoints "$dst" "$members"
    return "$rc"
}

prune_checkpoints() {  # DIR MEMBERS: in each trained member, keep its latest model.ckpt-N.pt only (links do not travel)
    local m d
    for m in ${2//,/ }; do
        d="$1/model_$m"
        [ -d "$d" ] || continue
        rm -f "$d/model.ckpt.pt"
        find "$d" -maxdepth 1 -name 'model.ckpt-*.pt' | sort -V | head -n -1 | xargs -r rm -f
    done
}

step_trpmd64() {
    export DPQTB_NL_BACKEND=$(nl_backend)
    local prev=${DPQTB_GPU_PREVIOUS:-}  # a previous session's $OUT/sweeps/verdict_gpu (resume), if carried
    [ -n "$prev" ] && [ -d "$prev" ] && [ ! -d "$OUT/sweeps/verdict_gpu" ] && mkdir -p "$OUT/sweeps" \
        && cp -r "$prev" "$OUT/sweeps/verdict_gpu"
    "$PY" -c "import sys; from dpqtb.cli import main; sys.exit(main(sys.argv[1:]))" --threads "$THREADS" \
        sweep "$TRPMD_FILE" --out "$OUT/sweeps/verdict_gpu" --serial --no-progress
}

if [ "${1:-}" = "--step" ]; then
    "step_$2"
    exit $?
fi

# ----------------------------------------------------------------------------------------- driver
DRY=${DPQTB_GPU_DRYRUN:-0}
export BUDGET=${DPQTB_GPU_BUDGET_S:-480}
if [ "$DRY" = "1" ]; then
    export WORK=${DPQTB_GPU_WORK:-/tmp/gpu_dry_work}
    export OUT=${OUT:-/tmp/gpu_dry} DEV=cpu PY=${DPQTB_GPU_PYTHON:-$ROOT/.venv/bin/python}
    export WHEELS=${DPQTB_GPU_WHEELS:-} THREADS=1 OMP_NUM_THREADS=1
    export BENCH_SIZES=44 REPEATS=1 REPEATS_SHORT=1 CASE_TIMEOUT=120
    export TEST_K=${DPQTB_GPU_TEST_K-"matches_deeppot_eval and primitive or bad_inputs"}
    export BUILTIN_COMPARE=44 BUILTIN_TIME=44 THERMO_CELLS=1 THERMO_STEPS=3 LARGE_SIZES=44 LARGE_CHUNK=20
    export NPT_SIZES=44 NPT_STEPS=5
    export TRPMD_FILE=$OUT/verdict_beads_dry.toml  # 2 beads, 80 + 320 steps on the CPU
    mkdir -p "$OUT" && sed -e 's/^device = "cuda".*/device = "cpu"/' -e 's/^equilibration_steps = 4000 .*/equilibration_steps = 80/' \
        -e 's/^production_steps = 4000 .*/production_steps = 320/' -e 's/^"thermostat.beads" = .*/"thermostat.beads" = [2]/' \
        examples/verdict_beads_gpu.toml >"$TRPMD_FILE"
else
    export WORK=${DPQTB_GPU_WORK:-/tmp}
    export OUT=${OUT:-/tmp/gpu_out} DEV=cuda PY=${DPQTB_GPU_PYTHON:-python3}
    export WHEELS=${DPQTB_GPU_WHEELS:-$ROOT/.whl} THREADS=8 OMP_NUM_THREADS=8
    export BENCH_SIZES=352,5500,44000 REPEATS=5 REPEATS_SHORT=3 CASE_TIMEOUT=100
    export TEST_K=${DPQTB_GPU_TEST_K:-}
    export BUILTIN_COMPARE=44,352 BUILTIN_TIME=5500,44000 THERMO_CELLS=10 THERMO_STEPS=100
    export LARGE_SIZES=352000,44000 LARGE_CHUNK=8192 NPT_SIZES="5500 44000" NPT_STEPS="20 5"
    export TRPMD_FILE=$ROOT/examples/verdict_beads_gpu.toml
fi
export SITE=$WORK/site MPI=$WORK/mpi CU12=$WORK/cu12
STEPS=${DPQTB_GPU_STEPS:-setup,check,bench,tests,builtin,thermostat,npt,large,trpmd64}
mkdir -p "$OUT"
T0=$SECONDS

want() { [[ ",$STEPS," == *",$1,"* ]]; }

run_step() {  # NAME CAP_S MIN_S: run step NAME under min(CAP_S, budget left), or skip it
    local name=$1 cap=$2 min=$3
    want "$name" || return 0
    local left=$((BUDGET - (SECONDS - T0) - 5))
    local t=$((cap < left ? cap : left))
    if [ "$t" -lt "$min" ]; then
        echo "== $name: SKIPPED (${left} s of the budget left, needs ${min})"
        printf '%s\tskipped\t0\n' "$name" >>"$OUT/steps.tsv"
        return 0
    fi
    echo "== $name: start $(date -u +%H:%M:%S), limit ${t} s (t = $((SECONDS - T0)) s)"
    local s0=$SECONDS rc=0
    STEP_LIMIT=$t timeout -k 10 "$t" bash "$SELF" --step "$name" || rc=$?
    local note=""
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then note=" (TIMED OUT)"; fi
    echo "== $name: rc=$rc$note, $((SECONDS - s0)) s"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - s0))" >>"$OUT/steps.tsv"
    return "$rc"
}

set_paths() {  # PYTHONPATH / LD_LIBRARY_PATH for what the setup step installed (if it ran)
    local pp="$ROOT/src"
    [ -d "$SITE" ] && [ -n "$WHEELS" ] && pp="$SITE:$pp"
    local mpisite
    mpisite=$(find "$MPI" -maxdepth 6 -name 'mpich-*.dist-info' -printf '%h\n' 2>/dev/null | head -1 || true)
    [ -n "$mpisite" ] && pp="$pp:$mpisite"
    export PYTHONPATH="$pp${PYTHONPATH:+:$PYTHONPATH}"
    [ -d "$CU12" ] && [ -n "$WHEELS" ] && export LD_LIBRARY_PATH="$CU12${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "PYTHONPATH=$PYTHONPATH"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
}

stub_ops() {  # the wheel's PyTorch ops did not load: go on without them (uncompressed models need none)
    local f="$SITE/deepmd/pt/cxx_op.py"
    [ -f "$f" ] || return 1
    grep -q "stubbed by scripts/gpu_session.sh" "$f" && return 1
    echo "== check: DeePMD-kit's PyTorch ops do not load here; stubbing $f (compressed models will fail)"
    cat >"$f" <<'PYEOF'
# stubbed by scripts/gpu_session.sh: the wheel's libdeepmd_op_pt.so did not load on this machine
ENABLE_CUSTOMIZED_OP = False
__all__ = ["ENABLE_CUSTOMIZED_OP"]
PYEOF
}

summary() {
    echo "== steps (name, rc, s):"
    cat "$OUT/steps.tsv" 2>/dev/null || true
    "$PY" - "$OUT" <<'PYEOF' || true
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("deepmd_cuda.json", "deepmd_cuda_large.json"):
    p = out / name
    if not p.is_file():
        continue
    d = json.loads(p.read_text())
    print(f"== {name} ({d.get('device_name')}, chunk {d.get('chunk_atoms')}, complete={d.get('complete')})")
    for r in d["results"]:
        if "s_per_call" in r:
            mem = f", GPU peak {r['peak_gpu_MB']:.0f} MB" if "peak_gpu_MB" in r else ""
            print(f"   {r['method']:>12} {r['n_atoms']:>8} atoms: {r['s_per_call']:.4g} s/call, "
                  f"{r['atom_steps_per_s']:.3g} atom-steps/s{mem}, E = {r['energy_eV']:.10g} eV")
        else:
            print(f"   {r['method']:>12} {r['n_atoms']:>8} atoms: FAILED {r.get('failed', '')[:160]}")
    for n, r in d.get("ratios", {}).items():
        print(f"   {n} atoms: dpqtb / DeepPot.eval speed-up {r['speedup_vs_deeppot_eval']:.3g}, "
              f"energy rel. diff {r['energy_rel_diff']:.2e}")
p = out / "builtin_cuda.json"
if p.is_file():
    d = json.loads(p.read_text())
    for c in d["compare"]:
        print(f"== builtin {c['n_atoms']} atoms: ok={c.get('ok')} dE/E={c.get('energy_rel_diff')} "
              f"max|dF|={c.get('force_max_abs_diff_eV_per_A')} {c.get('error', '')[:200]}")
    for t in d["timing"]:
        print(f"== builtin timing {t['n_atoms']} atoms: {t.get('s_per_call')} s/call {t.get('error', '')[:200]}")
PYEOF
    echo "== total $((SECONDS - T0)) s; files in $OUT:"
    ls -la "$OUT"
}

main() {
    echo "== gpu_session.sh: dry=$DRY device=$DEV python=$PY out=$OUT budget=${BUDGET}s steps=$STEPS"
    date -u
    (git -C "$ROOT" log -1 --format='commit %H %s' && git -C "$ROOT" status --short) 2>/dev/null | head -20 || true
    timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm --format=csv 2>/dev/null || true
    "$PY" --version
    : >"$OUT/steps.tsv"
    local ok_deepmd=1
    if [ -n "$WHEELS" ]; then
        run_step setup 90 10 || { echo "== setup failed: nothing else can run"; summary; return 1; }
    elif want setup; then
        echo "== setup: SKIPPED (dry run without DPQTB_GPU_WHEELS: the venv's packages are used)"
    fi
    set_paths
    if want check; then
        if ! run_step check 90 10; then
            if [ "$DEV" != "cpu" ] && ! grep -q '"cuda_available": true' "$OUT/env.json" 2>/dev/null; then
                echo "== check: no usable CUDA device: stopping"
                summary
                return 1
            fi
            if stub_ops && run_step check 90 10; then
                printf 'check\tops_stubbed\t0\n' >>"$OUT/steps.tsv"
            else
                ok_deepmd=0
                echo "== check: deepmd.pt does not import: the DeePMD-kit steps are skipped"
            fi
        fi
    fi
    if [ "$ok_deepmd" = 1 ]; then
        run_step bench 240 60 || true
        run_step tests 150 30 || true
        run_step builtin 90 30 || true
    fi
    run_step thermostat 60 20 || true
    [ "$ok_deepmd" = 1 ] && { run_step npt 90 30 || true; }
    [ "$ok_deepmd" = 1 ] && { run_step large 300 60 || true; }
    [ "$ok_deepmd" = 1 ] && { run_step trpmd64 600 60 || true; }
    [ "$ok_deepmd" = 1 ] && { run_step train 600 60 || true; }
    summary
}

set -o pipefail
main 2>&1 | tee -a "$OUT/log.txt"
