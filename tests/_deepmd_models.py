"""Small DeePMD-kit models for tests: built with random weights (no training), frozen like
``dp --pt freeze`` does (TorchScript + the extra file DeepPot expects)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch


def frozen_random_model(path: Path, sel=(24, 200), rcut: float = 4.5, seed: int = 1,
                        neuron=(8, 16), axis_neuron: int = 4, fitting=(16, 16)) -> Path:
    import deepmd.pt  # noqa: F401
    from deepmd.pt.model.model import get_model

    params = {
        "type_map": ["La", "H"],
        "descriptor": {"type": "se_e2_a", "sel": list(sel), "rcut_smth": 0.5, "rcut": rcut,
                       "neuron": list(neuron), "axis_neuron": axis_neuron, "seed": seed},
        "fitting_net": {"neuron": list(fitting), "seed": seed},
    }
    from deepmd.utils.argcheck import normalize

    full = normalize({"model": copy.deepcopy(params), "training": {"training_data": {"systems": ["x"]}, "numb_steps": 1},
                      "learning_rate": {"type": "exp", "start_lr": 1e-3}, "loss": {"type": "ener"}})
    torch.manual_seed(seed)
    model = get_model(full["model"])
    # non-trivial descriptor statistics and output bias so that every term of the model contributes;
    # like DeePMD's own statistics they are constant over the neighbour slots of one species block
    # (per-slot values would break permutation invariance)
    blocks = [0, *torch.cumsum(torch.tensor(sel), 0).tolist()]
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("descriptor.sea.mean") or name.endswith("descriptor.sea.stddev"):
                is_mean = name.endswith("mean")
                b = buf.view(buf.shape[0], -1, 4)
                for t in range(b.shape[0]):
                    for lo, hi in zip(blocks[:-1], blocks[1:]):
                        if is_mean:
                            b[t, lo:hi, 0] = float(torch.empty(()).normal_(0.1, 0.05))
                            b[t, lo:hi, 1:] = 0.0
                        else:
                            b[t, lo:hi, 0] = float(torch.empty(()).uniform_(0.5, 1.5))
                            b[t, lo:hi, 1:] = float(torch.empty(()).uniform_(0.5, 1.5))
            elif name.endswith("out_bias"):
                buf.normal_(0.0, 1.0)
        # larger weights than the default initialisation: forces of a few eV/Å, as in LaH10
        for name, par in model.named_parameters():
            if "fitting_net" in name and name.endswith(f"layers.{len(fitting)}.matrix"):
                par.mul_(1000.0)
            elif "descriptor" in name and name.endswith("layers.0.matrix"):
                par.mul_(10.0)
    model.eval()
    scripted = torch.jit.script(model)
    torch.jit.save(scripted, str(path), {"data_modifier.pth": ""})
    return path
