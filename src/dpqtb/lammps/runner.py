"""Finding and running a LAMMPS that has ``fix qtb`` and ``pair_style deepmd`` (scripts/install_lammps.sh).

The executable is, in this order: ``$DPQTB_LMP``; ``$DPQTB_LAMMPS_ROOT/bin/lmp``; ``.lammps/bin/lmp`` of
the source checkout (the install script's default); ``lmp`` on the PATH. :func:`find_lammps` also says why
none fits (missing, no QTB package, no DeePMD-kit plugin), for error messages and test skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from dpqtb import CalculationError, InputError
from dpqtb.rundir import LAMMPS_INPUT, LAMMPS_LOG

REPO = Path(__file__).resolve().parents[3]


def candidates() -> list[Path]:
    """The executables tried, in order."""
    out = []
    if os.environ.get("DPQTB_LMP"):
        out.append(Path(os.environ["DPQTB_LMP"]))
    if os.environ.get("DPQTB_LAMMPS_ROOT"):
        out.append(Path(os.environ["DPQTB_LAMMPS_ROOT"]) / "bin" / "lmp")
    out.append(REPO / ".lammps" / "bin" / "lmp")
    which = shutil.which("lmp")
    if which:
        out.append(Path(which))
    return out


def _probe(lmp: Path) -> str | None:
    """None when ``lmp`` runs fix qtb and pair_style deepmd, else why not."""
    try:
        help_text = subprocess.run([str(lmp), "-h"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{lmp} does not run ({exc})"
    if " qtb " not in f" {help_text.replace(chr(10), ' ')} ":
        return f"{lmp} has no fix qtb (LAMMPS built without the QTB package)"
    with tempfile.TemporaryDirectory() as d:
        Path(d, "in.probe").write_text("units metal\nplugin list\n")
        r = subprocess.run([str(lmp), "-in", "in.probe", "-log", "none"], capture_output=True, text=True,
                           cwd=d, timeout=120)
    out = r.stdout + r.stderr
    if "pair style plugin deepmd" not in out:  # a failed load names the plugin's path, so look for this line
        failed = [ln.strip() for ln in out.splitlines() if "failed" in ln and "deepmd" in ln.lower()]
        return f"{lmp} loads no DeePMD-kit plugin (pair_style deepmd; LAMMPS_PLUGIN_PATH unset?)" + (
            f": {failed[0]}" if failed else "")
    return None


def find_lammps() -> tuple[Path | None, str]:
    """(executable, "") for the first candidate with fix qtb and pair_style deepmd, else (None, why).

    Returns
    -------
    tuple
        The executable and an empty string, or None and the reasons every candidate failed.
    """
    reasons = []
    for lmp in candidates():
        if not (lmp.is_file() and os.access(lmp, os.X_OK)):
            reasons.append(f"{lmp} not installed")
            continue
        why = _probe(lmp)
        if why is None:
            return lmp, ""
        reasons.append(why)
    return None, "no LAMMPS with fix qtb and pair_style deepmd (scripts/install_lammps.sh): " + "; ".join(reasons)


def run_deck(deck_dir: str | Path, lmp: str | Path | None = None, threads: int = 1,
             timeout_s: float | None = None) -> Path:
    """Run ``in.lammps`` in ``deck_dir`` (serial, ``threads`` OpenMP/torch threads); returns the log path.

    Raises
    ------
    InputError
        No deck in the folder, or no usable LAMMPS.
    CalculationError
        LAMMPS failed (the last lines of its output in the message).
    """
    deck_dir = Path(deck_dir)
    if not (deck_dir / LAMMPS_INPUT).is_file():
        raise InputError(f"{deck_dir} has no {LAMMPS_INPUT} (write it with dpqtb lammps)")
    if lmp is None:
        lmp, why = find_lammps()
        if lmp is None:
            raise InputError(why)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), DP_INTRA_OP_PARALLELISM_THREADS=str(threads),
               DP_INTER_OP_PARALLELISM_THREADS="1")
    r = subprocess.run([str(lmp), "-in", LAMMPS_INPUT, "-log", LAMMPS_LOG, "-screen", "none"], cwd=deck_dir,
                       env=env, capture_output=True, text=True, timeout=timeout_s)
    log = deck_dir / LAMMPS_LOG
    if r.returncode != 0:
        tail = (log.read_text(errors="replace") if log.is_file() else r.stdout + r.stderr).strip().splitlines()[-5:]
        raise CalculationError(f"LAMMPS failed (exit {r.returncode}) in {deck_dir}: " + " | ".join(tail))
    return log
