#!/usr/bin/env bash
# One concurrent-learning iteration K, end to end, in the background and resumable:
#   scripts/cl_iteration.sh K            # e.g. 1: uses data/concurrent/iter1/{train,explore}.toml
# 1. pauses the DFT labelling (SIGSTOP of the running `dpqtb.dft.runner` ranks: two MPI jobs on two
#    cores busy-wait on each other and each runs several times slower; the queue worker, mpiexec and the
#    ranks are stopped and continued where it was when this script ends, fails or is terminated —
#    only a SIGKILL of this script leaves them stopped: then `pkill -CONT -f dpqtb.dft.runner`),
# 2. trains the ensemble (dpqtb train; members 0,1 and 2,3 as two 1-thread processes side by side),
# 3. validates every member (dpqtb validate) and writes data/concurrent/iterK/ensemble_validation.json,
# 4. copies the frozen members to data/concurrent/iterK/ensemble/ (small nets: committed, so that the
#    ensemble outlives the session; models/ is not in git),
# 5. explores (dpqtb explore; candidates queued in the store named in explore.toml) and copies
#    explore.{json,md} to data/concurrent/iterK/,
# 6. resumes the labelling with the new candidates first, then the older stores (scripts/label_queue.sh).
# Every step skips what is already done, so re-running after a crash continues. Log: work/cl_iterK.log.
#   DPQTB_CL_FOREGROUND=1   run in the foreground (default: detach, nice 10)
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:?usage: scripts/cl_iteration.sh K}
DIR=data/concurrent/iter$K
[ -f "$DIR/train.toml" ] && [ -f "$DIR/explore.toml" ] || { echo "cl_iteration: $DIR/{train,explore}.toml missing" >&2; exit 2; }
mkdir -p work
LOG=work/cl_iter$K.log
if [ "${DPQTB_CL_FOREGROUND:-0}" != "1" ] && [ "${2:-}" != "--worker" ]; then
    setsid nohup nice -n 10 bash "$0" "$K" --worker </dev/null >>"$LOG" 2>&1 &
    echo "iteration $K running in the background (pid $!); log: $LOG"
    exit 0
fi
OUT=models/iter$K
DP=.venv/bin/dpqtb
say() { echo "== $(date -u +%FT%TZ) iter$K: $*"; }

# the labelling processes: queue workers, mpiexec and the runner ranks (their command lines name them)
label_pids() { pgrep -f "dpqtb.dft.runner|label_queue.sh --worker" | tr '\n' ' ' || true; }
PAUSED=""
TRAIN_PIDS=""
cleanup() {
    for p in $TRAIN_PIDS; do
        pkill -TERM -P "$p" 2>/dev/null || true   # its `dp --pt train` child
        kill -TERM "$p" 2>/dev/null && say "stopped training process $p" || true
    done
    for p in $TRAIN_PIDS; do wait "$p" 2>/dev/null || true; done
    TRAIN_PIDS=""
    if [ -n "$PAUSED" ]; then
        kill -CONT $PAUSED 2>/dev/null || true
        say "labelling resumed (pids $PAUSED)"
        PAUSED=""
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT
PAUSED=$(label_pids)
if [ -n "$PAUSED" ]; then
    kill -STOP $PAUSED
    say "labelling paused (pids $PAUSED)"
fi

# 2. training: the first process exports the data; the second reuses it
export OMP_NUM_THREADS=1
say "training $OUT"
REUSE=()
# a resumed iteration trains on the data it exported first, whatever was labelled since
[ -f "$OUT/data/manifest.json" ] && REUSE=(--reuse-data)
"$DP" --threads 1 train "$DIR/train.toml" --out "$OUT" --members 0,1 "${REUSE[@]}" --no-progress &
A=$!
TRAIN_PIDS="$A"
for _ in $(seq 900); do
    [ -f "$OUT/sel_statistics.json" ] && break
    kill -0 $A 2>/dev/null || break
    sleep 2
done
if [ ! -f "$OUT/sel_statistics.json" ]; then
    say "the first training process did not export the data; see above"
    exit 1
fi
"$DP" --threads 1 train "$DIR/train.toml" --out "$OUT" --members 2,3 --reuse-data --no-progress &
B=$!
TRAIN_PIDS="$A $B"
wait $A || { say "training of members 0,1 failed"; exit 1; }
wait $B || { say "training of members 2,3 failed"; exit 1; }
TRAIN_PIDS=""
say "trained: $(ls $OUT/model_*/frozen_model.pth | wc -l) members"

# 3. validation of every member
for m in "$OUT"/model_*; do
    k=${m##*_}
    model="$m/compressed_model.pth"
    [ -f "$model" ] || model="$m/frozen_model.pth"
    if [ ! -f "$OUT/validation_$k/report.json" ] || [ "$model" -nt "$OUT/validation_$k/report.json" ]; then
        "$DP" validate --model "$model" --data "$OUT" --out "$OUT/validation_$k"
    fi
done
.venv/bin/python - "$OUT" "$DIR" <<'PYEOF'
import hashlib, json, sys
from pathlib import Path
out, d = Path(sys.argv[1]), Path(sys.argv[2])
res = {"ensemble": str(out), "members": {}}
for rep in sorted(out.glob("validation_*/report.json")):
    r = json.loads(rep.read_text())
    k = rep.parent.name.split("_")[1]
    t = r["test"]
    res["dataset_version"] = r["data"].get("dataset_version", res.get("dataset_version"))
    frozen = out / f"model_{k}" / "frozen_model.pth"
    res["members"][k] = {"model": r["model"]["path"], "sha256": r["model"]["sha256"],
                         "frozen_sha256": hashlib.sha256(frozen.read_bytes()).hexdigest() if frozen.is_file() else None,
                         "test_frames": t["frames"],
                         "rmse_e_meV_per_atom": round(t["rmse_e_meV_per_atom"], 3),
                         "rmse_f_eV_per_A": round(t["rmse_f_eV_per_A"], 4),
                         "rmse_v_meV_per_atom": round(t["rmse_v_meV_per_atom"], 3),
                         "rmse_p_GPa": round(t["rmse_p_GPa"], 3),
                         "eos_max_abs_dP_GPa": round(r["eos"]["max_abs_dP_same_geometry_GPa"], 3),
                         "force_rms_dft_eV_per_A": round(t["force_rms_dft_eV_per_A"], 4)}
(d / "ensemble_validation.json").write_text(json.dumps(res, indent=1) + "\n")
print(f"{d}/ensemble_validation.json: {len(res['members'])} members")
PYEOF

# 4. the frozen members travel with the repository
mkdir -p "$DIR/ensemble"
for m in "$OUT"/model_*; do
    k=${m##*_}
    cp "$m/frozen_model.pth" "$DIR/ensemble/model_$k.pth"
    [ -f "$m/input.json" ] && cp "$m/input.json" "$DIR/ensemble/input_$k.json"
done
say "frozen members copied to $DIR/ensemble ($(du -sh "$DIR/ensemble" | cut -f1))"

# 5. exploration (the labeller is paused: both cores)
export OMP_NUM_THREADS=2
"$DP" --threads 2 explore "$DIR/explore.toml" --out "work/explore_iter$K" --no-progress
cp "work/explore_iter$K/explore.json" "work/explore_iter$K/explore.md" "$DIR/"
say "exploration recorded in $DIR/explore.{json,md}"

# 6. labelling again, the new candidates first
cleanup
NEW=$(.venv/bin/python - "$DIR/explore.toml" <<'PYEOF'
import os, sys, tomllib
from pathlib import Path
cfg = Path(sys.argv[1])
store = tomllib.loads(cfg.read_text())["selection"]["store"]
print(os.path.relpath((cfg.parent / store).resolve(), Path.cwd().resolve()))
PYEOF
)
# the new candidates, then every other store, newest round first
QUEUE=("$NEW")
for s in $(ls -d data/labels/round* | sort -V -r); do
    [ "$(realpath "$s")" = "$(realpath "$NEW")" ] || QUEUE+=("$s")
done
scripts/label_queue.sh "${QUEUE[@]}"
say "done"
