#!/usr/bin/env bash
# LAMMPS with QTB and DeePMD-kit (PyTorch backend) for `dpqtb lammps` decks: not part of ./setup.sh.
#   scripts/install_lammps.sh            # everything, resumable: each finished step leaves a stamp
#   scripts/install_lammps.sh --check    # only say whether the installed lmp runs fix qtb + pair deepmd
#   scripts/install_lammps.sh --step deepmd   # one step only (source, lammps, deepmd, wrapper): steps 2 and
#                                             # 3 need only step 1, so they can build side by side
# Steps (docs/lammps.md has the timings and the errors met):
#   1. LAMMPS source: Debian's source package lammps 20250204+dfsg.1 (the 4 Feb 2025 feature release;
#      the DFSG repack keeps src/QTB and src/PLUGIN, Debian's binaries just leave QTB out), fetched with
#      `apt-get source` from trixie's deb-src (a sources entry is added once), sha256 checked;
#   2. LAMMPS: CMake, serial (MPI stubs), packages QTB and PLUGIN only, shared library, installed in
#      $ROOT/lammps (bin/lmp);
#   3. DeePMD-kit 3.2.0 C++ library and its LAMMPS plugin (source: the PyPI sdist of deepmd-kit 3.2.0,
#      whose source/ tree is the C++ code), PyTorch backend built against the venv's torch
#      (USE_PT_PYTHON_LIBS), no TensorFlow, no GPU, no MPI (LAMMPS is serial: the plugin must use its
#      MPI stubs, not the system MPI headers); installed in $ROOT/deepmd (lib/deepmd_lmp/);
#   4. $ROOT/bin/lmp: a wrapper that sets LAMMPS_PLUGIN_PATH and the torch library path, and a smoke run.
# Environment: DPQTB_LAMMPS_ROOT (default ./.lammps), JOBS (default 1: `nice -n 19 make -j1`, the CPUs are
# shared), PY (default .venv/bin/python), MPI (default 0; MPI=1 builds LAMMPS and the plugin against the
# system OpenMPI, for cells too big for one process: run with `mpirun -np N $ROOT/bin/lmp`; use a ROOT of its
# own, a ROOT holds one kind of build).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
ROOT=${DPQTB_LAMMPS_ROOT:-$REPO/.lammps}
JOBS=${JOBS:-1}
PY=${PY:-$REPO/.venv/bin/python}
MPI=${MPI:-0}
LMP_DEB_VERSION=20250204+dfsg.1-2
LMP_ORIG=lammps_20250204+dfsg.1.orig.tar.xz
LMP_SHA256=3671165bd52fad36734e0a9136c5bc5ecb225e03988f8c89aa13366a8b53b1c7
DP_VERSION=3.2.0
# DeePMD-kit 3.2 needs CMake >= 3.25.2 (Debian bookworm has 3.25.1): the venv's pip cmake when there is one
CMAKE=${CMAKE:-$( [ -x "$(dirname "$PY")/cmake" ] && echo "$(dirname "$PY")/cmake" || echo cmake )}
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
LOG=$ROOT/install.log
say() { echo "== $(date -u +%FT%TZ) install_lammps: $*" | tee -a "$LOG"; }
stamp() { touch "$ROOT/.done_$1"; }
done_() { [ -f "$ROOT/.done_$1" ]; }
NICE=(nice -n 19)
# a ROOT holds one kind of build: serial (MPI stubs) or MPI, never both
KIND=$([ "$MPI" = 1 ] && echo mpi || echo serial)
[ -f "$ROOT/.kind" ] || ! done_ lammps || echo serial > "$ROOT/.kind"   # built before .kind existed
if [ -f "$ROOT/.kind" ] && [ "$(cat "$ROOT/.kind")" != "$KIND" ]; then
    echo "install_lammps: $ROOT holds a $(cat "$ROOT/.kind") build; MPI=$MPI needs a DPQTB_LAMMPS_ROOT of its own" >&2
    exit 2
fi
echo "$KIND" > "$ROOT/.kind"
if [ "$MPI" = 1 ]; then
    command -v mpicxx > /dev/null || { echo "install_lammps: MPI=1 needs mpicxx (apt-get install libopenmpi-dev openmpi-bin)" >&2; exit 2; }
    LMP_MPI=(-D BUILD_MPI=ON)
    # the plugin finds the system MPI, as LAMMPS does, and like LAMMPS skips OpenMPI's C++ bindings (else
    # dpplugin.so needs libmpi_cxx: "undefined symbol: _ZN3MPI8Datatype4FreeEv" and no pair_style deepmd)
    DP_MPI=(-D "CMAKE_CXX_FLAGS=-DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1")
else
    LMP_MPI=(-D BUILD_MPI=OFF)
    DP_MPI=(-D CMAKE_DISABLE_FIND_PACKAGE_MPI=ON)  # the plugin must use LAMMPS's MPI stubs
fi

smoke() {
    [ -x "$ROOT/bin/lmp" ] || { echo "install_lammps: $ROOT/bin/lmp missing" >&2; return 1; }
    "$ROOT/bin/lmp" -h > "$ROOT/lmp_help.txt" 2>&1 || true
    grep -q "qtb" "$ROOT/lmp_help.txt" || { echo "install_lammps: lmp has no fix qtb" >&2; return 1; }
    local d; d=$(mktemp -d)
    printf 'units metal\nplugin list\n' > "$d/in.plugins"
    (cd "$d" && "$ROOT/bin/lmp" -in in.plugins -log none -screen "$d/out" > /dev/null 2>&1) || true
    # the loaded-plugin line itself: a failed load also names the plugin's path (".../deepmd_lmp/dpplugin.so")
    if ! grep -q "pair style plugin deepmd" "$d/out"; then
        echo "install_lammps: the DeePMD-kit plugin is not loaded by $ROOT/bin/lmp:" >&2
        cat "$d/out" >&2
        rm -rf "$d"; return 1
    fi
    rm -rf "$d"
    echo "LAMMPS $(grep -m1 -o 'Large-scale[^)]*)' "$ROOT/lmp_help.txt" || true) with fix qtb and pair_style deepmd ready: $ROOT/bin/lmp"
}
if [ "${1:-}" = "--check" ]; then smoke; exit $?; fi
ONLY=""
if [ "${1:-}" = "--step" ]; then ONLY=${2:?usage: --step source|lammps|deepmd|wrapper}; fi
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

# 1. LAMMPS source ------------------------------------------------------------------------------
SRC=$ROOT/lammps-src
if want source && ! done_ source; then
    say "step 1: LAMMPS source ($LMP_ORIG)"
    mkdir -p "$ROOT/dl"
    if [ ! -f "$ROOT/dl/$LMP_ORIG" ]; then
        if ! apt-cache showsrc "lammps=$LMP_DEB_VERSION" 2>/dev/null | grep -q "$LMP_ORIG"; then
            say "adding trixie deb-src to apt (source packages only) and updating the lists"
            cat > /etc/apt/sources.list.d/dpqtb-lammps-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
            apt-get update >> "$LOG" 2>&1
        fi
        # the .dsc may be missing on the mirror (404); the orig tarball is all that is needed
        (cd "$ROOT/dl" && apt-get source --download-only "lammps=$LMP_DEB_VERSION" >> "$LOG" 2>&1) || true
    fi
    echo "$LMP_SHA256  $ROOT/dl/$LMP_ORIG" | sha256sum -c - >> "$LOG"
    rm -rf "$SRC"; mkdir -p "$SRC"
    "${NICE[@]}" tar xJf "$ROOT/dl/$LMP_ORIG" -C "$SRC" --strip-components=1
    [ -f "$SRC/src/QTB/fix_qtb.cpp" ] && [ -f "$SRC/src/PLUGIN/plugin.cpp" ]
    stamp source
fi

# 2. LAMMPS ------------------------------------------------------------------------------------
if want lammps && ! done_ lammps; then
    say "step 2: LAMMPS (QTB, PLUGIN, $KIND) make -j$JOBS"
    t0=$(date +%s)
    "$CMAKE" -S "$SRC/cmake" -B "$ROOT/build-lammps" -G "Unix Makefiles" \
        -D CMAKE_BUILD_TYPE=Release -D CMAKE_INSTALL_PREFIX="$ROOT/lammps" -D CMAKE_INSTALL_LIBDIR=lib \
        "${LMP_MPI[@]}" -D BUILD_OMP=ON -D BUILD_SHARED_LIBS=ON -D LAMMPS_INSTALL_RPATH=ON \
        -D PKG_QTB=ON -D PKG_PLUGIN=ON \
        -D WITH_JPEG=OFF -D WITH_PNG=OFF -D WITH_FFMPEG=OFF -D WITH_CURL=OFF -D BUILD_TOOLS=OFF \
        -D BUILD_LAMMPS_GUI=OFF >> "$LOG" 2>&1
    "${NICE[@]}" make -C "$ROOT/build-lammps" -j"$JOBS" >> "$LOG" 2>&1
    make -C "$ROOT/build-lammps" install >> "$LOG" 2>&1
    say "LAMMPS built in $(( $(date +%s) - t0 )) s"
    stamp lammps
fi

# 3. DeePMD-kit C++ library + LAMMPS plugin ------------------------------------------------------
if want deepmd && ! done_ deepmd; then
    say "step 3: DeePMD-kit $DP_VERSION C++ (PyTorch) + LAMMPS plugin"
    "$PY" -c "import torch" || { echo "install_lammps: $PY has no torch (run ./setup.sh first)" >&2; exit 1; }
    t0=$(date +%s)
    DPSRC=$ROOT/deepmd-src
    if [ ! -f "$DPSRC/source/CMakeLists.txt" ]; then
        mkdir -p "$ROOT/dl"
        "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation "deepmd-kit==$DP_VERSION" -d "$ROOT/dl" >> "$LOG" 2>&1
        rm -rf "$DPSRC"; mkdir -p "$DPSRC"
        tar xzf "$ROOT/dl/deepmd_kit-$DP_VERSION.tar.gz" -C "$DPSRC" --strip-components=1
    fi
    TORCH_CMAKE=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
    ABI=$("$PY" -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')
    [ "$ABI" = 1 ] || say "warning: torch uses the pre-C++11 ABI; LAMMPS must then be built with -D_GLIBCXX_USE_CXX11_ABI=0"
    "$CMAKE" -S "$DPSRC/source" -B "$ROOT/build-deepmd" -G "Unix Makefiles" \
        -D CMAKE_BUILD_TYPE=Release -D CMAKE_INSTALL_PREFIX="$ROOT/deepmd" \
        -D ENABLE_TENSORFLOW=OFF -D ENABLE_PYTORCH=ON -D ENABLE_JAX=OFF -D ENABLE_PADDLE=OFF \
        -D USE_PT_PYTHON_LIBS=TRUE -D CMAKE_PREFIX_PATH="$TORCH_CMAKE" \
        -D USE_CUDA_TOOLKIT=OFF -D USE_ROCM_TOOLKIT=OFF -D BUILD_TESTING=OFF \
        -D Python_EXECUTABLE="$PY" "${DP_MPI[@]}" \
        -D LAMMPS_SOURCE_ROOT="$SRC" >> "$LOG" 2>&1
    "${NICE[@]}" make -C "$ROOT/build-deepmd" -j"$JOBS" >> "$LOG" 2>&1
    make -C "$ROOT/build-deepmd" install >> "$LOG" 2>&1
    say "DeePMD-kit C++ built in $(( $(date +%s) - t0 )) s"
    stamp deepmd
fi

# 4. wrapper + smoke run ------------------------------------------------------------------------
if [ -n "$ONLY" ] && [ "$ONLY" != wrapper ]; then exit 0; fi
done_ lammps && done_ deepmd || { echo "install_lammps: steps lammps and deepmd not both done" >&2; exit 1; }
mkdir -p "$ROOT/bin"
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
PLUGIN_DIR=$(dirname "$(find "$ROOT/deepmd" -name 'dpplugin.so' -o -name 'libdeepmd_lmp.so' | head -1)")
cat > "$ROOT/bin/lmp" <<EOF
#!/usr/bin/env bash
# LAMMPS (QTB, PLUGIN) with the DeePMD-kit plugin: written by scripts/install_lammps.sh
export LAMMPS_PLUGIN_PATH="$PLUGIN_DIR\${LAMMPS_PLUGIN_PATH:+:\$LAMMPS_PLUGIN_PATH}"
export LD_LIBRARY_PATH="$ROOT/deepmd/lib:$ROOT/lammps/lib:$TORCH_LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$ROOT/lammps/bin/lmp" "\$@"
EOF
chmod +x "$ROOT/bin/lmp"
smoke | tee -a "$LOG"
