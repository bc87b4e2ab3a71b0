#!/usr/bin/env bash
# Label several job stores one after the other, in the background (2 MPI ranks, nice 19): the first
# store has priority (e.g. the model-deviation candidates of the latest concurrent-learning round),
# then the next. Safe to re-run: labelled frames are never recomputed.
#   scripts/label_queue.sh data/labels/round1 data/labels/round0
#   DPQTB_LABEL_RANKS=1 scripts/label_queue.sh ...   (one rank, when training shares the cores)
#   DPQTB_LABEL_LANES=2 scripts/label_queue.sh ...   (two 1-rank runners at once, each on its own
#       store: a lane skips a store the other lane is labelling and comes back to it only if it still
#       has unlabelled jobs that never failed when the lane has run out of stores; ranks default to 1)
#   DPQTB_LABEL_SMALLEST_FIRST=1 scripts/label_queue.sh ...   (the cells with the fewest atoms first,
#       across the stores: a lane labels the smallest cells of the first store no other lane holds,
#       then the next size; most frames per hour. Store order still breaks ties)
#   DPQTB_LABEL_NICE=0 scripts/label_queue.sh ...   (the queue's scheduler-group nice, default 19: it
#       yields to everything; 0 when it must progress beside other full-load work, as its test does)
# If one of the stores is already being labelled, this asks that runner to stop after its frame in
# flight (SIGUSR1, as dpqtb label --stop), waits for it, and starts the queue (nothing is lost).
# Logs: STORE/runner.log.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--worker" ]; then
    [ $# -ge 1 ] || { echo "usage: scripts/label_queue.sh STORE [STORE ...]" >&2; exit 2; }
    for s in "$@"; do
        [ -d "$s/jobs" ] || { echo "label_queue: no job store at $s" >&2; exit 2; }
    done
    lanes=${DPQTB_LABEL_LANES:-1}
    [[ "$lanes" =~ ^[1-9][0-9]*$ ]] || { echo "label_queue: DPQTB_LABEL_LANES must be a positive integer, got '$lanes'" >&2; exit 2; }
    ranks=${DPQTB_LABEL_RANKS:-$([ "$lanes" -gt 1 ] && echo 1 || echo 2)}
    [[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "label_queue: DPQTB_LABEL_RANKS must be a positive integer, got '$ranks'" >&2; exit 2; }
    small=${DPQTB_LABEL_SMALLEST_FIRST:-0}
    [[ "$small" =~ ^[01]$ ]] || { echo "label_queue: DPQTB_LABEL_SMALLEST_FIRST must be 0 or 1, got '$small'" >&2; exit 2; }
    nice=${DPQTB_LABEL_NICE:-19}
    [[ "$nice" =~ ^(1?[0-9])$ ]] || { echo "label_queue: DPQTB_LABEL_NICE must be an integer 0-19, got '$nice'" >&2; exit 2; }
    # fail here, in the foreground, if the MPI command cannot be built (before older queues are ended)
    .venv/bin/python -m dpqtb.dft.mpi "$ranks" >/dev/null || { echo "label_queue: cannot build the mpiexec command" >&2; exit 1; }
    # own session = own scheduler autogroup, so nice 19 really yields to interactive work
    DPQTB_LABEL_LANES=$lanes DPQTB_LABEL_RANKS=$ranks DPQTB_LABEL_SMALLEST_FIRST=$small DPQTB_LABEL_NICE=$nice setsid nohup bash "$0" --worker "$@" </dev/null >/dev/null 2>&1 &
    echo "labelling in order: $* ($lanes lane(s) of $ranks MPI rank(s); background pid $!); progress: .venv/bin/dpqtb label --store STORE --status"
    exit 0
fi
shift
echo "${DPQTB_LABEL_NICE:-19}" > "/proc/$$/autogroup" 2>/dev/null || true
# Processes are told apart by their working directory: only this checkout's queue workers and
# runners are continued, ended or stopped here (a test run, or a second checkout, never touches
# another's labelling).
here=$(pwd -P)
ours() {  # PIDs (from pgrep -f PATTERN) that run in this checkout, other than this shell
    local p
    for p in $(pgrep -f "$1" || true); do
        [ "$p" != "$$" ] && [ "$(readlink "/proc/$p/cwd" 2>/dev/null)" = "$here" ] && echo "$p"
    done
    return 0
}
# An older queue worker would start its next store as soon as its runner is stopped below: end it
# first (its runner, if any, goes on with its frame in flight). Anything paused (SIGSTOP, see
# scripts/cl_iteration.sh) is continued first so that it can finish or be stopped cleanly.
for w in $(ours "label_queue.sh --worker"); do
    kill -CONT "$w" 2>/dev/null || true
    kill -TERM "$w" 2>/dev/null || true
done
for p in $(ours "dpqtb\.dft\.runner"); do kill -CONT "$p" 2>/dev/null || true; done
# DPQTB_LABEL_RANKS=1 when a training job shares the 2 cores: two MPI ranks on one free core busy-wait
# in their collectives and label several times slower than one serial rank (k-point parallelism only:
# the labels do not depend on the rank count beyond round-off).
ranks=$DPQTB_LABEL_RANKS  # checked by the foreground part
# "env OMP_NUM_THREADS=1 ... mpiexec [--allow-run-as-root] [--bind-to none] -n RANKS": GPAW's
# environment and the mpiexec prefix, from dpqtb.dft.mpi
mapfile -t mpi < <(.venv/bin/python -m dpqtb.dft.mpi "$ranks")
[ "${mpi[0]:-}" = env ] || { echo "$0: cannot build the mpiexec command" >&2; exit 1; }
held() {  # "STORE PID" for each given store that a live runner is labelling (its runner.lock)
    .venv/bin/python -m dpqtb.dft.lock "$@"
}
running() {  # the pid labelling STORE, if any
    local out
    out=$(held "$1") && [ -n "$out" ] && echo "${out##* }"
}
for s in "$@"; do
    asked=
    # SIGUSR1 to the runner's rank 0 (the lock holder; dpqtb label --stop): it ends once its frame
    # in flight is written, so nothing is lost and no job is marked interrupted. Wait on the lock,
    # not the pid (an exited process can linger as a zombie); a runner that was starting (no pid
    # in its lock yet, -1) or a new holder is asked in turn
    while pid=$(running "$s"); do
        if [ "$pid" -gt 0 ] && [ "$pid" != "$asked" ]; then
            kill -USR1 "$pid" 2>/dev/null || true
            asked=$pid
        fi
        sleep 2
    done
done
unfinished() {  # jobs neither labelled, retired nor skipped as failed [with at most $2 atoms]
    .venv/bin/python - "$1" "${2:-0}" <<'PY' 2>/dev/null || echo 0
import sys
from dpqtb.dft.store import JobStore
from dpqtb.dft.runner import skipped_failures
s, most = JobStore(sys.argv[1]), int(sys.argv[2])
todo = set(s.pending()) - skipped_failures(s)
print(sum(1 for j in todo if most == 0 or len(s.job_record(j)["symbols"]) <= most))
PY
}
sizes() {  # the atom counts of the jobs not yet labelled in the given stores, ascending
    .venv/bin/python - "$@" <<'PY' 2>/dev/null || true
import sys
from dpqtb.dft.store import JobStore
n = set()
for root in sys.argv[1:]:
    s = JobStore(root)
    n.update(len(s.job_record(j)["symbols"]) for j in s.pending())
print(*sorted(n))
PY
}
lane() {  # label the stores in order, skipping one another lane holds; then a second pass over the
    # stores that still have never-failed jobs (failed ones are retried by the first pass of the
    # next queue run, not once more per lane)
    local pass s extra n
    if [ "$DPQTB_LABEL_SMALLEST_FIRST" = 1 ]; then
        # size by size across the stores (failed jobs are retried by pass 1 below)
        for n in $(sizes "$@"); do
            for s in "$@"; do
                running "$s" >/dev/null && continue
                [ "$(unfinished "$s" "$n")" = 0 ] && continue
                echo "== $(date -u +%FT%TZ) label_queue: $s --smallest-first --max-atoms $n" >> "$s/runner.log"
                nice -n 19 "${mpi[@]}" .venv/bin/python -m dpqtb.dft.runner "$s" --smallest-first \
                    --skip-failed --max-atoms "$n" >> "$s/runner.log" 2>&1 || true
            done
        done
    fi
    for pass in 1 2; do
        extra=()
        [ "$pass" = 2 ] && extra=(--skip-failed)
        [ "$DPQTB_LABEL_SMALLEST_FIRST" = 1 ] && extra+=(--smallest-first)
        for s in "$@"; do
            running "$s" >/dev/null && continue
            [ "$pass" = 2 ] && [ "$(unfinished "$s")" = 0 ] && continue
            echo "== $(date -u +%FT%TZ) label_queue: $s ${extra[*]}" >> "$s/runner.log"
            nice -n 19 "${mpi[@]}" .venv/bin/python -m dpqtb.dft.runner "$s" ${extra[@]+"${extra[@]}"} \
                >> "$s/runner.log" 2>&1 || true
        done
    done
}
lanes=$DPQTB_LABEL_LANES
for ((i = 1; i <= lanes; i++)); do
    before=$(held "$@" | wc -l)
    lane "$@" &
    # let this lane take its store's lock before the next lane looks (up to 60 s; a lane that
    # finds nothing to label ends at once)
    for ((t = 0; t < 60 && i < lanes; t++)); do
        [ "$(held "$@" | wc -l)" -gt "$before" ] && break
        kill -0 $! 2>/dev/null || break
        sleep 1
    done
done
wait
