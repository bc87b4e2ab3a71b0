#!/usr/bin/env bash
# Install GPAW (plane-wave DFT, used to label La-H configurations) into ./.venv.
# Idempotent: a second run only checks that `import gpaw` works with MPI, ScaLAPACK and FFTW
# and that the PAW setups (including La) are found.
#   DPQTB_SKIP_APT=1   do not call apt-get (libraries already installed by other means)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PIP=("$PY" -m pip -q --disable-pip-version-check)

check() {
    "$PY" - <<'PYEOF' 2>/dev/null
import gpaw, dpdata, spglib
import gpaw.cgpaw as c
from gpaw.setup_data import search_for_file
search_for_file("La.PBE")  # raises if the PAW data set lacks La
from gpaw.utilities import compiled_with_sl
from gpaw import fftw
assert c.have_mpi and compiled_with_sl() and fftw.have_fftw() and hasattr(c, "mmm")
print(f"gpaw {gpaw.__version__} ready (MPI, ScaLAPACK, FFTW; PAW setups incl. La; dpdata {dpdata.__version__})")
PYEOF
}

if check; then
    exit 0
fi

APT_PKGS=(g++ libxc-dev libopenblas-dev libfftw3-dev libopenmpi-dev libscalapack-openmpi-dev openmpi-bin)
if [ "${DPQTB_SKIP_APT:-0}" != "1" ]; then
    missing=()
    for p in "${APT_PKGS[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        SUDO=""
        [ "$(id -u)" != "0" ] && SUDO="sudo"
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
    fi
fi

# A complete siteconfig: a partial one (no scalapack/fftw) builds a ~1.5x slower GPAW.
SITECONFIG="$PWD/scripts/gpaw_siteconfig.py"
export GPAW_CONFIG="$SITECONFIG"
# (Re)build GPAW from source unless an existing build has MPI, ScaLAPACK, FFTW and BLAS.
if ! "$PY" - <<'PYEOF' 2>/dev/null
import gpaw.cgpaw as c
from gpaw import fftw
from gpaw.utilities import compiled_with_sl
assert c.have_mpi and compiled_with_sl() and fftw.have_fftw() and hasattr(c, "mmm")
PYEOF
then
    "${PIP[@]}" install --force-reinstall --no-deps --no-binary gpaw --no-cache-dir "gpaw==26.7.0"
    "${PIP[@]}" install "gpaw==26.7.0"  # its Python dependencies
fi
"${PIP[@]}" install "gpaw-data>=1.2" "dpdata>=0.2.18" "spglib>=2.0"
if ! check; then
    echo "install_gpaw.sh: GPAW installed but the check failed; run: $PY -c 'import gpaw, dpdata, spglib'" >&2
    exit 1
fi
