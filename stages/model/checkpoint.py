"""Checkpoints: safetensors weights with the model config in the metadata, sharded into files of at most
16 MiB so the shipped model fits the package limits. A checkpoint is a file or a folder of shards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stages.errors import BadInput
from stages.io import atomic_dir, atomic_path
from stages.model.config import ModelConfig
from stages.model.network import Avat3rNet

FORMAT = "avat3r-checkpoint"
SHARD_BYTES = 15 * 2**20
DEFAULT_CHECKPOINT = Path(__file__).parent / "weights"


def _shards(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise BadInput("checkpoint folder holds no .safetensors files", path)
        return files
    if not path.is_file():
        raise BadInput("checkpoint not found", path)
    return [path]


def checkpoint_sha256(path: str | Path) -> str:
    """Hash of the checkpoint's weight files, recorded in every avatar made with it."""
    h = hashlib.sha256()
    for f in _shards(Path(path)):
        h.update(f.read_bytes())
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: Avat3rNet, meta: dict[str, str] | None = None,
                    dtype: torch.dtype = torch.float32, shard: bool = False) -> Path:
    """Write weights (cast to `dtype`) with the config in metadata; `shard=True` writes a folder of ≤15 MiB
    files (for shipping), otherwise one file."""
    path = Path(path)
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "config": model.cfg.to_json(), **(meta or {})}
    if not shard:
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=metadata)
        return path
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in state.items():
        nbytes = v.numel() * v.element_size()
        if groups[-1] and size + nbytes > SHARD_BYTES:
            groups.append({})
            size = 0
        groups[-1][k] = v
        size += nbytes
    with atomic_dir(path) as tmp:
        for i, g in enumerate(groups):
            save_file(g, str(tmp / f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"), metadata=metadata)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Weights and metadata of a checkpoint file or shard folder; corrupt files are BadInput."""
    path = Path(path)
    state: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    for f in _shards(path):
        try:
            state.update(load_file(str(f)))
            from safetensors import safe_open

            with safe_open(str(f), framework="pt") as handle:
                meta = handle.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise BadInput(f"not a readable safetensors checkpoint ({exc})", f) from exc
        if meta.get("format") != FORMAT or "config" not in meta:
            raise BadInput("not an avat3r checkpoint (no avat3r config in its metadata)", f)
    return state, meta


def load_model(path: str | Path | None = None, device: torch.device | str = "cpu") -> tuple[Avat3rNet, dict]:
    """Rebuild the network a checkpoint describes and load its weights (float32, eval mode)."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if path == DEFAULT_CHECKPOINT and not any(path.glob("*.safetensors")):
        raise BadInput("the shipped checkpoint is missing from the package; reinstall or pass --checkpoint", path)
    state, meta = read_checkpoint(path)
    try:
        cfg = ModelConfig.from_json(meta["config"])
        model = Avat3rNet(cfg)
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except (ValueError, RuntimeError, json.JSONDecodeError, TypeError) as exc:
        raise BadInput(f"checkpoint does not match its own config ({str(exc).splitlines()[0]})", path) from exc
    model.eval().to(device)
    meta = dict(meta)
    meta["path"] = str(path.resolve())
    meta["sha256"] = checkpoint_sha256(path)
    return model, meta


def load_init_weights(model: Avat3rNet, state: dict[str, torch.Tensor], path: Path) -> list[str]:
    """Load `state` into `model` to start training from it (`train --init`). Weights trained without an option
    that starts as a no-op (`Avat3rNet.fresh_parameters`: `input_codes`, `decoder_self_layers`) load with that
    option's parameters left as initialised, so the run starts from exactly the network it continues. Returns
    the names left so; any other mismatch is BadInput naming the checkpoint."""
    fresh, own = model.fresh_parameters(), model.state_dict()
    missing = [k for k in own if k not in state]
    lacking = [k for k in missing if k not in fresh]
    if lacking:
        raise BadInput(f"checkpoint lacks weights this network needs ({first_names(lacking)})", path)
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise BadInput(f"checkpoint does not fit this network (weights it does not have: "
                       f"{first_names(unexpected)})", path)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        raise BadInput(f"checkpoint does not fit this network ({str(exc).splitlines()[0]})", path) from exc
    return missing


def in_module(name: str, prefix: str) -> bool:
    """Whether weight `name` lies under the module `prefix` (whole dotted components: `up` holds `up.0.conv.weight`
    but not `upper.weight`); how `average --module-weights` and `train --train-only` name parts of a network."""
    return name == prefix or name.startswith(prefix + ".")


def first_names(names: list[str], shown: int = 4) -> str:
    """The first few names, and how many more: a whole network's weight names would drown the message."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
