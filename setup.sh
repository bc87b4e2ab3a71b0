#!/usr/bin/env bash
# Set up dpqtb in ./.venv (idempotent: a second run only checks).
#   DPQTB_PYTHON=python3.11   interpreter used to create the venv
#   DPQTB_KEEP_TORCH=1        keep whatever torch is already in the venv (e.g. a CUDA build)
#   DPQTB_NO_DFT=1            skip GPAW/dpdata/spglib (DFT labelling); MD and analysis still work
#   DPQTB_NO_DP=1             skip DeePMD-kit (training, the Deep Potential); toy potentials still work
#   DPQTB_NO_QE=1             skip Quantum ESPRESSO (only the GPAW cross-check, dpqtb.dft.crosscheck, uses it)
set -euo pipefail
cd "$(dirname "$0")"
PY=${DPQTB_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
# The CPU build of torch 2.13.0 lies on this machine's disk; a bare `torch` would pull a CUDA build.
if [ "${DPQTB_KEEP_TORCH:-0}" != "1" ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    "${PIP[@]}" install "torch==2.13.0"
fi
"${PIP[@]}" install -e ".[test]"
# GPAW (with MPI, ScaLAPACK, FFTW; Debian libraries via apt-get), PAW data incl. La, dpdata, spglib
if [ "${DPQTB_NO_DFT:-0}" != "1" ]; then
    scripts/install_gpaw.sh
    if [ "${DPQTB_NO_QE:-0}" != "1" ]; then
        scripts/install_qe.sh
    fi
fi
# DeePMD-kit 3.2.0 (PyTorch backend), built from source against the venv's torch (~2 min)
if [ "${DPQTB_NO_DP:-0}" != "1" ]; then
    scripts/install_deepmd.sh
fi
.venv/bin/python -c "import dpqtb, torch; print(f'dpqtb {dpqtb.__version__} ready (torch {torch.__version__})')"
