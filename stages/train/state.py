"""The resumable training state (weights, optimiser, RNG states, step, config) in one safetensors file whose
metadata holds the non-tensor part as JSON. No pickle: a run folder downloaded from anywhere cannot run code when
resumed. Runs saved before this format (`train_state.pt`) load only through torch's weights-only unpickler."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from stages.errors import BadInput
from stages.io import atomic_path

STATE_FILE = "train_state.safetensors"
LEGACY_STATE_FILE = "train_state.pt"


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Python, NumPy, torch (and CUDA) generator states, split into tensors and JSON-able values."""
    version, words, gauss = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state()
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy_key": torch.from_numpy(key.astype(np.int64))}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    values = {"python": [version, list(words), gauss], "numpy": [name, int(pos), int(has_gauss), float(cached)]}
    return tensors, values


def set_rng_state(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    version, words, gauss = values["python"]
    random.setstate((version, tuple(words), gauss))
    name, pos, has_gauss, cached = values["numpy"]
    np.random.set_state((name, tensors["rng.numpy_key"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(len(tensors)) if f"rng.cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _split_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser state_dict as tensors named opt.<param>.<name> plus the JSON-able rest (param groups)."""
    tensors, scalars = {}, {}
    for pid, entries in sd["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            pid, name = key[4:].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    for key, value in values["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    # JSON turned tuples (betas) into lists; the optimiser compares and indexes them either way, but keep them
    # as they were saved so a resumed state_dict equals the original.
    groups = [{k: (v if k == "params" or not isinstance(v, list) else tuple(v)) for k, v in g.items()}
              for g in values["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, config_json: str) -> None:
    """Write everything a bit-identical resume needs to `path` (atomically: a crash leaves the previous one)."""
    opt_tensors, opt_values = _split_optimizer(opt.state_dict())
    rng_tensors, rng_values = rng_state()
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tensors.update(opt_tensors)
    tensors.update(rng_tensors)
    meta = {"format": "avat3r-train-state-1", "step": step, "config": config_json, "optimizer": opt_values,
            "rng": rng_values}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})


class TrainState:
    """A loaded resume point: model and optimiser state_dicts, RNG states, step and the run's stored config."""

    def __init__(self, model: dict, optimizer: dict, rng: tuple[dict, dict], step: int, config_json: str):
        self.model, self.optimizer, self.rng, self.step, self.config_json = model, optimizer, rng, step, config_json

    def restore_rng(self) -> None:
        set_rng_state(*self.rng)


def load_state(path: Path) -> TrainState:
    """Read a state written by save_state; a damaged or foreign file is BadInput, never a traceback."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["state"])
        tensors = load_file(str(path))
        model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
        return TrainState(model, _join_optimizer(tensors, meta["optimizer"]), (rng, meta["rng"]), int(meta["step"]),
                          meta["config"])
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as exc:
        raise BadInput(f"not a training state this version can resume ({exc}); start a new --out or pass "
                       "--no-resume", path) from None


def load_legacy_state(path: Path) -> TrainState:
    """Read a pickled train_state.pt from before this format through torch's weights-only unpickler (tensors,
    plain containers and NumPy arrays only), so a file crafted to run code is refused instead of executed."""
    numpy_types = [np.ndarray, np.dtype, np.dtypes.UInt32DType, np._core.multiarray._reconstruct]
    try:
        with torch.serialization.safe_globals(numpy_types):
            state = torch.load(path, map_location="cpu", weights_only=True)
        r = state["rng"]
        version, words, gauss = r["python"]
        name, key, pos, has_gauss, cached = r["numpy"]
        tensors = {"rng.torch": r["torch"], "rng.numpy_key": torch.from_numpy(np.asarray(key).astype(np.int64))}
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(r.get("cuda", []))})
        values = {"python": [version, list(words), gauss], "numpy": [name, pos, has_gauss, cached]}
        return TrainState(state["model"], state["optimizer"], (tensors, values), int(state["step"]),
                          state["config"])
    except Exception as exc:  # noqa: BLE001 - whatever the unpickler or a foreign layout raises, refuse the file
        raise BadInput("refused to resume from this pickled training state: it holds more than tensors and plain "
                       f"values, so loading it could run code ({type(exc).__name__}); start a new --out or pass "
                       "--no-resume", path) from None
