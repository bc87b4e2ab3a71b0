#!/usr/bin/env bash
# Install DeePMD-kit 3.2.0 (PyTorch backend) into ./.venv, built from source against the torch
# already in the venv.  The PyPI wheel is built against torch 2.11 and its custom ops fail to load
# under other torch versions; a source build (~2-4 min) matches whatever torch is installed.
# Idempotent: a second run only checks that `dp --pt` loads its ops with this torch.
#   DPQTB_DEEPMD_WHEEL=1   use the PyPI wheel instead (only when the venv's torch is 2.11)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PIP=("$PY" -m pip -q --disable-pip-version-check)

check() {
    "$PY" - <<'PYEOF' 2>/dev/null
import torch
import deepmd
from deepmd.pt.model.model import get_model  # noqa: F401  (imports the PyTorch backend)
import deepmd.pt.cxx_op  # noqa: F401
assert hasattr(torch.ops, "deepmd") and hasattr(torch.ops.deepmd, "border_op"), "deepmd custom ops not loaded"
import vesin, dpdata  # noqa: F401
print(f"deepmd-kit {deepmd.__version__} ready (PyTorch backend, ops built for torch {torch.__version__})")
PYEOF
}

if check; then
    exit 0
fi

"${PIP[@]}" install e3nn vesin vesin-torch dpdata
if [ "${DPQTB_DEEPMD_WHEEL:-0}" = "1" ]; then
    "${PIP[@]}" install "deepmd-kit[torch]==3.2.0"
else
    "${PIP[@]}" install scikit-build-core setuptools_scm cmake ninja dependency-groups \
        hatch-fancy-pypi-readme packaging
    DP_ENABLE_TENSORFLOW=0 DP_VARIANT=cpu "${PIP[@]}" install --no-build-isolation \
        --no-binary deepmd-kit "deepmd-kit==3.2.0"
fi
if ! check; then
    echo "install_deepmd.sh: DeePMD-kit installed but its PyTorch ops do not load with this torch" >&2
    "$PY" -c "import deepmd.pt.cxx_op" >&2 || true
    exit 1
fi
