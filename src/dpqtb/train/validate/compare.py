"""Paired comparison of models on the same held-out frames (``dpqtb validate --compare``): RMSE ratios
with (cluster-)bootstrap intervals."""

from __future__ import annotations

import numpy as np

from dpqtb import InputError


def compare_models(errors: dict[str, dict], *, groups=None, n_boot: int = 20000,
                   seed: int = 0) -> dict:
    """Paired comparison of the first model in ``errors`` (name -> :func:`per_frame_errors`, all on
    the same frames) with each other one.

    For each pair: the force- and energy-RMSE ratios first/other, with 95 % bootstrap intervals from
    resampling the frames (the same resample for both models, so frame-to-frame difficulty cancels),
    and the number of frames on which the first model's per-frame force RMSE is lower.  With
    ``groups`` (a label per frame, e.g. :func:`frame_groups`) whole groups are resampled instead
    (a cluster bootstrap): frames picked from one exploration run are correlated, and resampling
    them one by one would make the interval too narrow.  The interval covers data sampling only: if
    the first model was picked on these same frames (the best seed of an ensemble, say), compare it
    with its siblings as well before reading a ratio below 1 as real.
    """
    names = list(errors)
    if len(names) < 2:
        raise InputError("compare_models needs at least two models")
    nf = len(errors[names[0]]["sq_f"])
    if nf == 0 or any(len(errors[k]["sq_f"]) != nf for k in names):
        raise InputError("compare_models: the models were not evaluated on the same frames")
    if groups is None:
        gid, ng = np.arange(nf), nf
    else:
        if len(groups) != nf:
            raise InputError(f"compare_models: {len(groups)} group labels for {nf} frames")
        _, gid = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        ng = int(gid.max()) + 1
    idx = np.random.default_rng(seed).integers(0, ng, size=(n_boot, ng))

    def per_group(x):
        return np.bincount(gid, weights=x, minlength=ng)

    count_g = per_group(errors[names[0]]["n_f"].astype(float))
    frames_g = per_group(np.ones(nf))
    cnt_b, frames_b = count_g[idx].sum(axis=1), frames_g[idx].sum(axis=1)

    def f_rmse(err, sel=None):
        if sel is None:
            return np.sqrt(err["sq_f"].sum() / count_g.sum())
        return np.sqrt(per_group(err["sq_f"])[sel].sum(axis=1) / cnt_b)

    def e_rmse(err, sel=None):
        if sel is None:
            return np.sqrt(np.mean(err["de"] ** 2))
        return np.sqrt(per_group(err["de"] ** 2)[sel].sum(axis=1) / frames_b)

    def ci(r):
        r = r[~np.isnan(r)]  # 0/0 (both models exact on a resample); ±inf are kept, they are ordered
        if len(r) == 0:
            return [float("nan"), float("nan")]
        return [float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))]

    first = errors[names[0]]
    out = {"frames": int(nf), "bootstrap_resamples": int(n_boot), "seed": int(seed),
           "resampled": "frames" if groups is None else "groups",
           "groups": int(ng),
           "rmse_f_eV_per_A": {k: float(f_rmse(errors[k])) for k in names},
           "rmse_e_meV_per_atom": {k: 1000 * float(e_rmse(errors[k])) for k in names},
           "pairs": {}}
    for other_name in names[1:]:
        other = errors[other_name]
        with np.errstate(divide="ignore", invalid="ignore"):
            rf = f_rmse(first, idx) / f_rmse(other, idx)
            re = e_rmse(first, idx) / e_rmse(other, idx)
            ratio_f = float(f_rmse(first) / f_rmse(other))
            ratio_e = float(e_rmse(first) / e_rmse(other))
        lo, hi = ci(rf)
        out["pairs"][f"{names[0]} vs {other_name}"] = {
            "rmse_f_ratio": ratio_f, "rmse_f_ratio_ci95": [lo, hi],
            "rmse_e_ratio": ratio_e, "rmse_e_ratio_ci95": ci(re),
            "frames_first_lower_f": int((first["sq_f"] < other["sq_f"]).sum()),
            "verdict_f": ("lower" if hi < 1 else "higher" if lo > 1 else "not distinguishable"),
        }
    return out
