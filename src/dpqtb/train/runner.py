"""``dpqtb train``: data, DeePMD-kit inputs and the ``dp --pt train/freeze/compress`` runs of an
ensemble, resumable.

Layout of an output directory ``DIR``::

    DIR/config.toml            copy of the training config
    DIR/data/                  train/ and test/ (deepmd/npy) and manifest.json (dataset version)
    DIR/sel_statistics.json    neighbour statistics behind the descriptor's sel
    DIR/model_K/input.json     DeePMD-kit input of member K (members differ only by seeds)
    DIR/model_K/train.log      DeePMD-kit's output (appended across restarts)
    DIR/model_K/lcurve.out     learning curve (*_trn: training batch, *_val: held-out test batches);
                               model.ckpt-*.pt checkpoints
    DIR/model_K/frozen_model.pth, compressed_model.pth
    DIR/model_K/metrics.json   dataset version, input, sel statistics, code versions, wall times
    DIR/ensemble.json          the members' model paths and metrics summary

Re-running the same command resumes: finished members are skipped, an interrupted member restarts
from its latest checkpoint (``dp --pt train input.json --restart model.ckpt.pt``), a trained but
not yet frozen member is frozen/compressed.  The data are exported once per ``DIR``: if the job
stores have changed since, the run stops (use a new ``--out``, or ``--reuse-data`` to finish with
the exported data).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from dpqtb import DpqtbError, CalculationError, InputError, __version__
from dpqtb.signals import handling
from dpqtb.train import config as tconfig
from dpqtb.train.dataset import current_version, file_sha256, prepare_dataset, read_manifest, read_systems
from dpqtb.train.sel import sel_statistics, structures_from_systems

POLL_S = 2.0
#: Held-out test batches DeePMD-kit evaluates per lcurve line (validation_data numb_btch), at most.
VALID_BATCHES_MAX = 10
#: lcurve.out columns recorded in metrics.json (lcurve_final) and ensemble.json, and their names there.
LCURVE_METRICS = {"step": "step", "lr": "lr",
                  "rmse_e_trn": "rmse_e_trn_eV_per_atom", "rmse_f_trn": "rmse_f_trn_eV_per_A",
                  "rmse_v_trn": "rmse_v_trn_eV_per_atom",
                  "rmse_e_val": "rmse_e_val_eV_per_atom", "rmse_f_val": "rmse_f_val_eV_per_A",
                  "rmse_v_val": "rmse_v_val_eV_per_atom"}


def code_versions() -> dict:
    out = {"dpqtb": __version__, "python": platform.python_version()}
    for mod in ("deepmd", "torch", "dpdata", "numpy", "ase", "vesin"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional package is recorded as such
            out[mod] = None
    return out


def train_machine(env: dict | None = None) -> dict:
    """Where a training session ran (the card says which machine made which member): ``host`` and
    ``device`` — the CUDA device `dp` sees (``CUDA_VISIBLE_DEVICES`` of its environment respected), else
    the CPU with its thread count."""
    import socket

    env = dict(os.environ if env is None else env)
    device = None
    if env.get("CUDA_VISIBLE_DEVICES", None) != "" and env.get("DEVICE", "").lower() != "cpu":  # DeePMD's switch
        try:
            import torch

            if torch.cuda.is_available():
                device = f"cuda: {torch.cuda.get_device_name(0)}"
        except Exception:  # noqa: BLE001 - no usable torch/CUDA here: the CPU
            device = None
    if device is None:
        device = f"cpu: {platform.processor() or platform.machine()}, {env.get('OMP_NUM_THREADS', '?')} threads " \
                 f"of {os.cpu_count()} cores"
    return {"host": socket.gethostname(), "device": device}


def dp_executable() -> str:
    """The ``dp`` command of this environment (next to the Python interpreter, else on PATH)."""
    cand = Path(sys.executable).parent / "dp"
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    found = shutil.which("dp")
    if not found:
        raise InputError("DeePMD-kit's `dp` command is not installed: run scripts/install_deepmd.sh")
    return found


def _env(threads: int | None) -> dict:
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        env["DP_INTRA_OP_PARALLELISM_THREADS"] = str(threads)
        env["DP_INTER_OP_PARALLELISM_THREADS"] = "1"
    return env


def read_lcurve(path: str | os.PathLike) -> dict[str, list[float]]:
    """Columns of a DeePMD-kit lcurve.out (empty dict if the file is missing or has no data)."""
    path = Path(path)
    if not path.is_file():
        return {}
    names: list[str] = []
    rows: list[list[float]] = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            parts = line[1:].split()
            if parts and parts[0] == "step":
                names = parts
            continue
        vals = line.split()
        if names and len(vals) == len(names):
            try:
                rows.append([float(v) for v in vals])
            except ValueError:
                continue
    if not rows:
        return {}
    return {n: [r[k] for r in rows] for k, n in enumerate(names)}


def _last_step(lcurve: dict) -> int:
    return int(lcurve["step"][-1]) if lcurve else 0


def _latest_checkpoint(mdir: Path) -> Path | None:
    """The highest-numbered ``model.ckpt-N.pt``: not DeePMD-kit's ``model.ckpt.pt`` link, which a directory
    copied back from another machine (links do not travel) may leave pointing at an older checkpoint."""
    ckpts = sorted(mdir.glob("model.ckpt-*.pt"), key=lambda p: int(p.stem.split("-")[-1]))
    if ckpts:
        return ckpts[-1]
    link = mdir / "model.ckpt.pt"
    return link if link.exists() else None


def _log_tail(path: Path, n: int = 1) -> str:
    if not path.is_file():
        return ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    errs = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errs[-1] if errs else (lines[-1] if lines else ""))[:300]


def _run_dp(args: list[str], cwd: Path, logfile: Path, env: dict, what: str,
            on_poll=None) -> float:
    """Run ``dp`` with output appended to ``logfile``; returns the wall time (s).

    ``on_poll()`` is called every :data:`POLL_S` seconds while it runs (progress display); a
    KeyboardInterrupt (Ctrl-C, SIGTERM — ``kill PID``, a batch system's time limit — or raised by
    ``on_poll``) stops the child and is re-raised, so that no orphaned ``dp`` trains on and the
    session is recorded.
    """
    t0 = time.time()
    with handling(signal.SIGTERM, _interrupt_on_term):
        return _run_dp_child(args, cwd, logfile, env, what, on_poll, t0)


def _interrupt_on_term(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(f"signal {signum}")


def _run_dp_child(args, cwd, logfile, env, what, on_poll, t0) -> float:
    with open(logfile, "a") as log:
        log.write(f"\n# dpqtb {time.strftime('%Y-%m-%dT%H:%M:%S')}: {' '.join(args)}\n")
        log.flush()
        proc = subprocess.Popen([dp_executable(), *args], cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                try:
                    rc = proc.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    if on_poll is not None:
                        on_poll()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    if on_poll is not None:
        on_poll()
    if rc != 0:
        raise CalculationError(f"`dp --pt {args[1] if args[0] == '--pt' else args[0]}` failed for {what} "
                         f"(exit {rc}); see {logfile}: {_log_tail(logfile)}")
    return time.time() - t0


class _Progress:
    """A progress bar fed from lcurve.out."""

    def __init__(self, lcurve: Path, total: int, desc: str, enabled: bool, callback=None):
        self.lcurve, self.total, self.callback = lcurve, total, callback
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True,
                            file=sys.stderr)
        self.step = 0

    def __call__(self) -> None:
        lc = read_lcurve(self.lcurve)
        step = _last_step(lc)
        if self.bar is not None and step > self.step:
            self.bar.update(step - self.bar.n)
            post = {}
            for key, label in (("rmse_e_trn", "E(eV/atom)"), ("rmse_f_trn", "F(eV/Å)"),
                               ("rmse_f_val", "F_val(eV/Å)")):
                if key in lc:
                    post[label] = f"{lc[key][-1]:.3g}"
            self.bar.set_postfix(post, refresh=True)
        self.step = step
        if self.callback is not None:
            self.callback(step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _prepare_data(cfg: dict, out: Path, reuse_data: bool, log) -> dict:
    data_dir = out / "data"
    stores, modulus = cfg["data"]["stores"], cfg["data"]["test_modulus"]
    if (data_dir / "manifest.json").is_file():
        manifest = read_manifest(data_dir)
        if reuse_data:
            log(f"reusing the exported data in {data_dir} (dataset {manifest['dataset_version']})")
            return manifest
        for s in stores:
            if not Path(s).is_dir():
                raise InputError(f"no job store at {s}")
        version, n_train = current_version(stores, modulus)
        if version != manifest["dataset_version"] or modulus != manifest.get("test_modulus"):
            raise InputError(
                f"{out} holds dataset {manifest['dataset_version']} ({manifest['train']['frames']} "
                f"training frames) but the stores now give {version} ({n_train}): use a new --out "
                f"to train on the new data, or --reuse-data to finish with the exported data")
        log(f"data unchanged (dataset {version}, {n_train} training frames)")
        return manifest
    manifest = prepare_dataset(stores, data_dir, modulus)
    log(f"dataset {manifest['dataset_version']}: {manifest['train']['frames']} training and "
        f"{manifest['test']['frames']} held-out test frames ({manifest['split_rule']})")
    return manifest


def _sel(cfg: dict, out: Path, manifest: dict, log) -> dict:
    path = out / "sel_statistics.json"
    d = cfg["descriptor"]
    key = {"dataset_version": manifest["dataset_version"], "rcut_A": float(d["rcut_A"]),
           "margin": float(d["sel_margin"]), "reference_a_A": float(d["sel_reference_a_A"])}
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("key") == key:
            stats = old
        else:
            stats = None
    else:
        stats = None
    if stats is None:
        systems = read_systems(out / "data" / "train")
        stats = sel_statistics(structures_from_systems(systems), d["rcut_A"], d["sel_margin"],
                               reference_a_A=d["sel_reference_a_A"])
        stats["key"] = key
        path.write_text(json.dumps(stats, indent=1))
    if d["sel"] == "auto":
        stats["sel_used"] = list(stats["sel"])
        stats["sel_source"] = "auto (neighbour statistics)"
    else:
        stats["sel_used"] = list(d["sel"])
        stats["sel_source"] = "config descriptor.sel"
        short = [t for t, s, m in zip(stats["type_map"], d["sel"], stats["max_neighbours"].values()) if s < m]
        if short:
            raise InputError(f"descriptor.sel = {d['sel']} is below the maximum neighbour count "
                             f"{stats['max_neighbours']} within {d['rcut_A']} Å for {', '.join(short)}; "
                             f"use sel = \"auto\" or larger values")
    log(f"neighbours within {d['rcut_A']} Å: max {stats['max_neighbours']} -> sel {stats['sel_used']} "
        f"({stats['sel_source']})")
    return stats


def _member_state(mdir: Path, compress: bool) -> str:
    metrics = mdir / "metrics.json"
    if metrics.is_file() and json.loads(metrics.read_text()).get("status") == "done" and \
            (mdir / "frozen_model.pth").is_file() and (not compress or (mdir / "compressed_model.pth").is_file()):
        return "done"
    state = mdir / "state.json"
    if state.is_file() and json.loads(state.read_text()).get("trained"):
        return "trained"
    if _latest_checkpoint(mdir) is not None:
        return "interrupted"
    return "new"


def train_member(mdir: Path, jdata: dict, cfg: dict, stats: dict, manifest: dict, *,
                 member: int, threads: int | None = None, progress: bool = True, log=print,
                 on_step=None) -> dict:
    """Train (or resume), freeze and compress one ensemble member in ``mdir``; returns metrics."""
    mdir.mkdir(parents=True, exist_ok=True)
    compress = cfg["training"]["compress"]
    numb_steps = jdata["training"]["numb_steps"]
    inp = mdir / "input.json"
    state_path = mdir / "state.json"
    state = _member_state(mdir, compress)
    if inp.is_file() and state != "new":
        old = json.loads(inp.read_text())
        if old != jdata and old == _without_validation(jdata):
            # started before dpqtb passed the test split as validation_data: finish as started
            log(f"model_{member}: started without validation_data, continuing with its input.json")
            jdata = old
        elif old != jdata:
            raise InputError(f"{mdir} was started with a different DeePMD-kit input (config or data "
                             f"changed); use a new --out directory")
    if state == "done":
        log(f"model_{member}: done, skipped")
        return json.loads((mdir / "metrics.json").read_text())
    inp.write_text(json.dumps(jdata, indent=1))
    env = _env(threads)
    logfile = mdir / "train.log"
    st = json.loads(state_path.read_text()) if state_path.is_file() else {"sessions": []}
    if state in ("new", "interrupted"):
        args = ["--pt", "train", "input.json"]
        from_step = 0
        if state == "interrupted":
            ckpt = _latest_checkpoint(mdir)
            args += ["--restart", ckpt.name]
            from_step = _last_step(read_lcurve(mdir / "lcurve.out"))
            log(f"model_{member}: resuming from {ckpt.name} (lcurve at step {from_step})")
        else:
            for stale in ("lcurve.out",):
                if (mdir / stale).exists():
                    (mdir / stale).unlink()
            log(f"model_{member}: training {numb_steps} steps (log {logfile})")
        bar = _Progress(mdir / "lcurve.out", numb_steps, f"model_{member}", progress, on_step)
        t0, start = time.strftime("%Y-%m-%dT%H:%M:%S"), time.time()
        machine = train_machine(env)  # now: an interrupted session must not need a (slow) torch import to record

        def record(ok: bool) -> None:
            st["sessions"].append({"start": t0, "wall_s": round(time.time() - start, 2),
                                   "restart": state == "interrupted", "from_step": from_step,
                                   "to_step": _last_step(read_lcurve(mdir / "lcurve.out")),
                                   "completed": ok, **machine})
            state_path.write_text(json.dumps(st, indent=1))

        try:
            _run_dp(args, mdir, logfile, env, f"model_{member}", on_poll=bar)
        except BaseException:
            bar.close()
            record(False)
            raise
        bar.close()
        record(True)
        last = st["sessions"][-1]["to_step"]
        if last < numb_steps:
            raise InputError(f"model_{member}: dp train stopped at step {last} of {numb_steps}; "
                             f"see {logfile}")
        st["trained"] = True
        state_path.write_text(json.dumps(st, indent=1))
    t = time.time()
    if (mdir / "frozen_model.pth").exists():
        (mdir / "frozen_model.pth").unlink()
    _run_dp(["--pt", "freeze", "-o", "frozen_model.pth"], mdir, mdir / "freeze.log", env,
            f"model_{member} (freeze)")
    wall_freeze = time.time() - t
    wall_compress = None
    if compress:
        t = time.time()
        try:
            _run_dp(["--pt", "compress", "-i", "frozen_model.pth", "-o", "compressed_model.pth",
                     "-s", repr(float(cfg["training"]["compress_step"]))], mdir,
                    mdir / "compress.log", env, f"model_{member} (compress)")
        except DpqtbError as exc:
            raise InputError(f"{exc} — the frozen model {mdir / 'frozen_model.pth'} is fine; set "
                             f"[training] compress = false to skip compression") from None
        wall_compress = time.time() - t
    metrics = _metrics(mdir, jdata, cfg, stats, manifest, member, st, wall_freeze, wall_compress)
    (mdir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    fin, nan = metrics["lcurve_final"], float("nan")
    val = (f"; held-out batches E {fin.get('rmse_e_val_eV_per_atom', nan):.3g} eV/atom, "
           f"F {fin.get('rmse_f_val_eV_per_A', nan):.3g} eV/Å" if "rmse_f_val_eV_per_A" in fin else "")
    log(f"model_{member}: frozen{' and compressed' if compress else ''} "
        f"(train rmse E {fin.get('rmse_e_trn_eV_per_atom', nan):.3g} eV/atom, "
        f"F {fin.get('rmse_f_trn_eV_per_A', nan):.3g} eV/Å{val})")
    return metrics


def _without_validation(jdata: dict) -> dict:
    out = json.loads(json.dumps(jdata))
    out["training"].pop("validation_data", None)
    return out


def _s_per_batch(logfile: Path) -> list[float]:
    out = []
    if logfile.is_file():
        for line in logfile.read_text(errors="replace").splitlines():
            if "average training time:" in line:
                try:
                    out.append(float(line.split("average training time:")[1].split()[0]))
                except (IndexError, ValueError):
                    pass
    return out


def _metrics(mdir, jdata, cfg, stats, manifest, member, st, wall_freeze, wall_compress) -> dict:
    lc = read_lcurve(mdir / "lcurve.out")
    final = {LCURVE_METRICS[k]: v[-1] for k, v in lc.items() if k in LCURVE_METRICS}
    files = {}
    for name in ("frozen_model.pth", "compressed_model.pth"):
        p = mdir / name
        if p.is_file():
            files[name] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    return {
        "status": "done",
        "member": member,
        "seed": tconfig.member_seed(cfg, member),
        "dataset_version": manifest["dataset_version"],
        "train_frames": manifest["train"]["frames"],
        "test_frames": manifest["test"]["frames"],
        "stores": manifest["stores"],
        "input": jdata,
        "sel_statistics": {k: v for k, v in stats.items() if k != "key"},
        "codes": code_versions(),
        "wall_s": {"train": round(sum(s["wall_s"] for s in st["sessions"]), 2),
                   "freeze": round(wall_freeze, 2),
                   "compress": None if wall_compress is None else round(wall_compress, 2)},
        "s_per_batch": _s_per_batch(mdir / "train.log"),
        "sessions": st["sessions"],
        "lcurve_final": final,
        "files": files,
        "note": "lcurve_final: last lcurve.out line; *_trn on the current training batch, *_val on "
                "numb_btch randomly drawn held-out test batches (never trained on); full held-out "
                "errors: dpqtb validate",
    }


def train(config_path: str | os.PathLike, out_dir: str | os.PathLike, *, members=None,
          reuse_data: bool = False, threads: int | None = None, progress: bool = True,
          log=print, on_step=None) -> dict:
    """Prepare data and inputs, then train/freeze/compress the ensemble members in sequence."""
    cfg = tconfig.load(config_path)
    out = Path(out_dir)
    n_members = cfg["ensemble"]["members"]
    members = list(range(n_members)) if members is None else list(members)
    bad = [m for m in members if not 0 <= m < n_members]
    if bad:
        raise InputError(f"--members {bad}: the config's ensemble has members 0..{n_members - 1}")
    dp_executable()
    out.mkdir(parents=True, exist_ok=True)
    cfg_copy = out / "config.toml"
    text = Path(config_path).read_text()
    if cfg_copy.is_file() and cfg_copy.read_text() != text:
        log(f"note: {config_path} differs from {cfg_copy} (the inputs are checked per member)")
    cfg_copy.write_text(text)
    manifest = _prepare_data(cfg, out, reuse_data, log)
    stats = _sel(cfg, out, manifest, log)
    systems = [os.path.join("..", "data", "train", s) for s in manifest["train"]["systems"]]
    # the held-out split as validation_data: evaluated for lcurve.out only, never trained on
    valid = [os.path.join("..", "data", "test", s) for s in manifest["test"]["systems"]]
    valid_batches = max(1, min(int(manifest["test"]["frames"]), VALID_BATCHES_MAX))
    results = {}
    for k in members:
        jdata = tconfig.deepmd_input(cfg, stats["sel_used"], k, systems, valid, valid_batches)
        tconfig.check_with_deepmd(jdata)
        results[k] = train_member(out / f"model_{k}", jdata, cfg, stats, manifest, member=k,
                                  threads=threads, progress=progress, log=log, on_step=on_step)
    summary = {"dataset_version": manifest["dataset_version"], "members": {}}
    for k in range(n_members):
        mpath = out / f"model_{k}" / "metrics.json"
        if mpath.is_file():
            m = json.loads(mpath.read_text())
            model = "compressed_model.pth" if "compressed_model.pth" in m["files"] else "frozen_model.pth"
            summary["members"][str(k)] = {"model": f"model_{k}/{model}", "seed": m["seed"],
                                          "lcurve_final": m["lcurve_final"],
                                          "train_wall_s": m["wall_s"]["train"]}
    (out / "ensemble.json").write_text(json.dumps(summary, indent=1))
    return summary
