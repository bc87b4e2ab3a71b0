"""The rules between keys of an MD config: values that are each valid (:data:`dpqtb.md.config.SCHEMA`) but
together no physics, or no run. Called by :class:`dpqtb.md.config.MDConfig` once its sections are typed."""

from __future__ import annotations

from dpqtb import InputError
from dpqtb.md.barostat import check_stress_run
from dpqtb.md.config import BUILTIN_STRUCTURES, SCHEMA, MDConfig


def cross_checks(cfg: MDConfig) -> None:
    """Every rule between keys: values that are each valid but together no physics (or no run)."""
    sys_, pot, md, th = cfg.system, cfg.potential, cfg.md, cfg.thermostat
    if th.kind not in ("qtb", "adqtb"):
        for key in ("adapt_groups", "fd_skip_segments", "gamma_r_min_ratio"):
            if getattr(th, key) != SCHEMA["thermostat"][key][1]:
                raise InputError(f"config key 'thermostat.{key}' needs thermostat 'qtb' or 'adqtb', not '{th.kind}'")
    if th.kind != "nve" and th.temperature_K is None:
        raise InputError(f"missing required config key 'thermostat.temperature_K' for thermostat '{th.kind}'")
    if th.kind in ("pimd", "trpmd") and th.beads < 2:
        raise InputError(f"config key 'thermostat.beads' must be >= 2 for thermostat '{th.kind}'")
    if th.centroid_thermostat_steps and th.kind != "trpmd":
        raise InputError(f"config key 'thermostat.centroid_thermostat_steps' needs thermostat 'trpmd' (PIMD's centroid "
                         f"is always thermostatted), not '{th.kind}'")
    if th.kind not in ("pimd", "trpmd") and th.beads != 1:
        raise InputError(f"config key 'thermostat.beads' needs thermostat 'pimd' or 'trpmd', not '{th.kind}'")
    if th.kind not in ("pimd", "trpmd") and cfg.output.bead_trajectory_every:
        raise InputError(f"config key 'output.bead_trajectory_every' needs thermostat 'pimd' or 'trpmd', not '{th.kind}'")
    if pot.kind == "einstein" and (pot.k_eV_per_A2 is None) == (pot.frequency_THz is None):
        raise InputError("potential 'einstein' needs exactly one of 'potential.k_eV_per_A2' or 'potential.frequency_THz'")
    if pot.kind == "morse":
        for key in ("D_eV", "a_per_A", "r0_A", "cutoff_A"):
            if getattr(pot, key) is None:
                raise InputError(f"missing required config key 'potential.{key}' for potential 'morse'")
    if pot.kind == "deepmd" and not pot.model:
        raise InputError("config key 'potential.model' must name a model file or 'builtin:NAME'")
    if pot.kind != "deepmd":
        for key in ("ensemble", "deviation_every"):
            if getattr(pot, key) is not None:
                raise InputError(f"config key 'potential.{key}' needs potential 'deepmd', not '{pot.kind}'")
    elif pot.ensemble is None and pot.deviation_every is not None:
        raise InputError("config key 'potential.deviation_every' needs 'potential.ensemble' (the other members)")
    elif pot.ensemble is not None and pot.deviation_every is not None and pot.deviation_every % cfg.output.thermo_every:
        raise InputError(f"config key 'potential.deviation_every' = {pot.deviation_every} must be a multiple of "
                         f"output.thermo_every = {cfg.output.thermo_every} (the deviation is a thermo column)")
    if pot.kind == "function" and not pot.function:
        raise InputError("missing required config key 'potential.function' for potential 'function'")
    if th.kind in ("qtb", "adqtb") and th.damp_fs < md.timestep_fs:
        raise InputError(f"config key 'thermostat.damp_fs' = {th.damp_fs!r} must be >= md.timestep_fs = "
                         f"{md.timestep_fs!r} for QTB (a friction time below one step stops the atoms: "
                         "the coloured noise then vanishes and the run sits at 0 K)")
    if sys_.dtype == "float32" and sys_.device == "cpu":
        raise InputError("system.dtype = 'float32' is only allowed on a GPU (device = 'cuda')")
    name = sys_.builtin
    if name is not None:
        if name not in BUILTIN_STRUCTURES:
            raise InputError(f"unknown builtin structure {name!r} (known: {', '.join(BUILTIN_STRUCTURES)})")
        if name == "lah10" and (sys_.lattice_A is None) == (sys_.pressure_GPa is None):
            raise InputError("structure 'builtin:lah10' needs exactly one of 'system.lattice_A' or "
                             "'system.pressure_GPa'")
        if name != "lah10" and sys_.lattice_A is None:
            raise InputError(f"missing required config key 'system.lattice_A' for structure 'builtin:{name}'")
    baro = cfg.barostat
    if baro.enabled:
        if th.kind == "nve":
            raise InputError("[barostat] needs a thermostat with a temperature (langevin, qtb, adqtb, pimd, trpmd): "
                             "constant pressure at constant energy (NPH) is not supported")
        check_stress_run(baro.stress_GPa, baro.cell, th.kind)
        if baro.damp_fs < 10 * md.timestep_fs:
            raise InputError(f"config key 'barostat.damp_fs' = {baro.damp_fs!r} must be >= 10 md.timestep_fs = "
                             f"{10 * md.timestep_fs!r} (the cell must move slowly on the scale of a step)")
    else:
        for key in ("cell", "damp_fs", "compressibility_per_GPa", "stress_GPa"):
            if getattr(baro, key) != SCHEMA["barostat"][key][1]:
                raise InputError(f"config key 'barostat.{key}' needs 'barostat.pressure_GPa' (constant pressure)")
    if th.kind in ("pimd", "trpmd"):  # ω_P = P k_B T/ħ is fixed at the start
        if th.is_ramp:
            raise InputError("thermostat.temperature_K ramps are not supported for PIMD (ω_P depends on T)")
        if not th.temperatures_K[0] > 0:
            raise InputError("thermostat.temperature_K must be > 0 for PIMD")
