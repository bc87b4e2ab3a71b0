"""The one place that says how dpqtb starts GPAW under MPI: its environment and the mpiexec prefix
(the labeller's runner command, and the shell drivers ``scripts/label_queue.sh`` and
``scripts/relax_phases.sh`` through ``python -m dpqtb.dft.mpi RANKS``, which prints
``env VAR=VALUE ... mpiexec ...`` one argument per line)."""

from __future__ import annotations

import os
import subprocess
import sys


# one thread per rank (GPAW parallelises over MPI ranks; threaded BLAS in every rank oversubscribes
# the cores) and GPAW's own MPI build
GPAW_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "GPAW_MPI_BACKEND": "cgpaw"}


def gpaw_env(base: dict | None = None) -> dict:
    """The environment a GPAW process runs in: ``base`` (default os.environ) with GPAW_ENV set."""
    return {**(os.environ if base is None else base), **GPAW_ENV}


def mpiexec_is_openmpi() -> bool:
    """True when ``mpiexec`` is Open MPI's (its ``--version`` names Open MPI / OpenRTE / PRRTE)."""
    try:
        out = subprocess.run(["mpiexec", "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    text = (out.stdout + out.stderr).lower()
    return any(k in text for k in ("open mpi", "openrte", "prrte"))


def mpi_prefix(ranks: int) -> list[str]:
    """``mpiexec [--allow-run-as-root] [--bind-to none] -n RANKS``.

    Open MPI pins rank k to core k: two runs at once (a labeller and a relaxation, or two one-rank
    runners) would share core 0 while core 1 idles, so binding is switched off for Open MPI."""
    if ranks < 1:
        raise ValueError(f"MPI ranks must be >= 1, got {ranks}")
    cmd = ["mpiexec"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    if mpiexec_is_openmpi():
        cmd += ["--bind-to", "none"]
    return cmd + ["-n", str(ranks)]


if __name__ == "__main__":
    try:
        ranks = int(sys.argv[1])
        env = [f"{k}={v}" for k, v in GPAW_ENV.items()]
        print("\n".join(["env", *env, *mpi_prefix(ranks)]))
    except (IndexError, ValueError) as exc:
        sys.exit(f"usage: python -m dpqtb.dft.mpi RANKS (a positive integer): {exc}")
