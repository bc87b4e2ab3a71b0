#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels that a lent nvidia-h200 device machine lacks for
# scripts/gpu_session.sh: DeePMD-kit 3.2.0 (the PyPI wheel: ops built for torch 2.11, the machine's
# torch) and the runtime requirements that the machine's image does not hold
# (/work/.library/device/KINDS.md), vesin and ase for dpqtb, MPICH (libdeepmd_op_pt.so needs
# libmpi.so.12) and the CUDA 12 runtime (DeePMD-kit's CUDA kernels dlopen libcudart.so.12; torch
# there is cu130).  Python 3.12, manylinux x86_64, no dependency resolution (every need is named).
#
#   .whl/*.whl        pip install --target /tmp/site (the device README's command)
#   .whl/mpi/*.whl    pip install --prefix /tmp/mpi  (the wheel's libmpi.so.12 lies outside
#                     site-packages: --target would drop it; deepmd locates it from mpich's RECORD)
#   .whl/cu12/*.whl   only libcudart.so.12 is unpacked from it (not installed: it would shadow the
#                     machine's own `nvidia` packages)
#
#   DPQTB_WHEEL_DIR (.whl), DPQTB_WHEEL_PYVER (3.12): another folder / Python, e.g. the cp311 set that
#   the CPU dry run of gpu_session.sh installs here (DPQTB_GPU_WHEELS=that folder)
#
# Fails if the wheels exceed 60 MiB or the wheels plus the travelling working tree exceed 63 MiB
# (a device call carries at most 64 MiB).  Re-running replaces the set (one version of each).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
W=${DPQTB_WHEEL_DIR:-.whl}
DL=("$PY" -m pip download --no-deps --only-binary=:all: --python-version "${DPQTB_WHEEL_PYVER:-3.12}" --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

# versions: those of the tested .venv where it has the package
MAIN=(
    deepmd-kit==3.2.0
    dargs==0.5.1 typeguard==4.6.1          # deepmd.utils.argcheck
    wcmatch==12.0.3 bracex==3.2.3          # deepmd.utils.path
    array-api-compat==1.16.0               # deepmd.dpmodel
    lmdb==3.0.0                            # deepmd.dpmodel.utils (imported eagerly)
    mendeleev==1.3.0                       # deepmd.pt.infer.deep_eval -> deepmd.utils.econf_embd
    SQLAlchemy==2.1.9 Pint==0.24.4 flexcache==0.3 flexparser==0.4 platformdirs==4.14.9  # mendeleev's imports
    vesin==0.6.2 vesin-torch==0.6.2 ase==3.29.0   # dpqtb (vesin-torch: neighbour lists built on the GPU)
)
MPI=(mpich==5.0.2)
CU12=(nvidia-cuda-runtime-cu12==12.8.90)   # the wheel's kernels were built with CUDA 12.8

quiet() {  # pip's notes about this machine's local index folders and about running as root are noise here
    "$@" 2> >(grep -v -e "^WARNING: Location 'file:" -e "Running pip as the 'root' user" >&2)
}
mkdir -p "$W/mpi" "$W/cu12"
rm -f "$W"/*.whl "$W"/mpi/*.whl "$W"/cu12/*.whl
quiet "${DL[@]}" -q -d "$W" "${MAIN[@]}"
quiet "${DL[@]}" -q -d "$W/mpi" "${MPI[@]}"
quiet "${DL[@]}" -q -d "$W/cu12" "${CU12[@]}"

# requirements of the fetched wheels that neither the set nor the device image's package list holds
"$PY" - "$W" <<'PYEOF'
import re, sys, zipfile, glob
from pathlib import Path
kinds = Path("/work/.library/device/KINDS.md")
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
have = set()
if kinds.is_file():
    have = {norm(x.strip().rstrip(".")) for x in kinds.read_text().split("Packages:")[-1].split(",")}
w = sys.argv[1]
wheels = sorted(glob.glob(f"{w}/*.whl") + glob.glob(f"{w}/*/*.whl"))
# mendeleev declares these but `import mendeleev` (all DeePMD-kit's inference path needs) imports none
not_imported = {"deprecated", "pydantic", "pydantic-core", "pyfiglet"}
names = {norm(Path(w).name.split("-")[0]) for w in wheels}
missing = set()
for w in wheels:
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:") and "extra ==" not in line:
                req = norm(re.split(r"[ ;<>=!~\[(]", line.split(":", 1)[1].strip())[0])
                if req not in names | have | not_imported and "python_version < \"3.8\"" not in line:
                    missing.add(f"{req} (needed by {Path(w).name.split('-')[0]})")
print(f"{len(wheels)} wheels; requirements neither carried nor in the device image: "
      + (", ".join(sorted(missing)) or "none"))
if not kinds.is_file():
    print("(KINDS.md not found: the device image's package list was not checked)")
PYEOF

whl_bytes=$(find "$W" -name '*.whl' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
tree_bytes=$(git ls-files -co --exclude-standard -z | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
echo "wheels: $(mib "$whl_bytes") MiB in $W/; travelling working tree: $(mib "$tree_bytes") MiB;" \
     "together $(mib $((whl_bytes + tree_bytes))) MiB (limit 64 MiB)"
if [ "$whl_bytes" -gt $((60 * 1048576)) ]; then
    echo "fetch_gpu_wheels.sh: the wheels exceed 60 MiB" >&2
    exit 1
fi
if [ $((whl_bytes + tree_bytes)) -gt $((63 * 1048576)) ]; then
    echo "fetch_gpu_wheels.sh: wheels + working tree exceed 63 MiB (a device call carries 64 MiB at most)" >&2
    exit 1
fi
if [ "$W" = .whl ]; then
    git check-ignore -q .whl/x.whl || { echo "fetch_gpu_wheels.sh: .whl/ is not git-ignored" >&2; exit 1; }
fi
