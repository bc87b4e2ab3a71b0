#!/usr/bin/env python3
"""Compare the model-deviation statistics of two concurrent-learning explorations (same grid).

    python scripts/compare_explore.py data/concurrent/iter0/explore.json data/concurrent/iter1/explore.json

Prints a markdown table: per run, the median ε (max force deviation, eV/Å) and the candidate/failed
fractions of both iterations, and the totals. Runs are matched by name (the grid must be the same).
"""

from __future__ import annotations

import json
import sys


def main(a_path: str, b_path: str) -> int:
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    if (a["trust_lo_eV_per_A"], a["trust_hi_eV_per_A"]) != (b["trust_lo_eV_per_A"], b["trust_hi_eV_per_A"]):
        print("the two explorations use different trust windows: fractions are not comparable", file=sys.stderr)
        return 2
    ra = {r["name"]: r for r in a["runs"]}
    rb = {r["name"]: r for r in b["runs"]}
    common = [n for n in ra if n in rb]
    if not common:
        print("no run names in common", file=sys.stderr)
        return 2

    def q(r, k="0.5"):
        return r["max_devi_f_quantiles_eV_per_A"][k]

    print("| run | median ε A (eV/Å) | median ε B (eV/Å) | B/A | candidate A → B | failed A → B |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for n in common:
        x, y = ra[n], rb[n]
        ratios.append(q(y) / q(x))
        print(f"| {n} | {q(x):.3f} | {q(y):.3f} | {q(y) / q(x):.2f} | "
              f"{x['candidate_fraction']:.0%} → {y['candidate_fraction']:.0%} | "
              f"{x['failed_fraction']:.0%} → {y['failed_fraction']:.0%} |")
    ta, tb = a["total"], b["total"]
    print()
    print(f"All runs: accurate {ta['accurate_fraction']:.1%} → {tb['accurate_fraction']:.1%}, candidate "
          f"{ta['candidate_fraction']:.1%} → {tb['candidate_fraction']:.1%}, failed {ta['failed_fraction']:.1%} → "
          f"{tb['failed_fraction']:.1%}; ε quantiles 10/50/90/99 % "
          + " / ".join(f"{ta['max_devi_f_quantiles_eV_per_A'][k]:.2f}" for k in ("0.1", "0.5", "0.9", "0.99"))
          + " → " + " / ".join(f"{tb['max_devi_f_quantiles_eV_per_A'][k]:.2f}" for k in ("0.1", "0.5", "0.9", "0.99"))
          + f" eV/Å; median over runs of the per-run ratio B/A {sorted(ratios)[len(ratios) // 2]:.2f} "
          f"(lower in {sum(r < 1 for r in ratios)} of {len(ratios)} runs).")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
