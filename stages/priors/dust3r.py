"""The `dust3r` backend: a user-supplied official DUSt3R checkpoint, run through the optional `mini-dust3r`
package (install `avat3r[dust3r]`; the model code is CC BY-NC-SA, so it is never a required dependency).

Checkpoints are read with `weights_only=True` (only tensors, containers and argparse.Namespace are allowed),
and the model description string they carry is parsed as literals instead of being evaluated as code.
DUSt3R runs on every ordered pair of input views; each pair is put onto the known cameras by its own
similarity transform (see `align`), and each view's depth along its rays is the confidence-weighted mean over
the pairs it is in.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.cameras import Cameras
from stages.errors import BadInput
from stages.priors.align import Similarity, align_to_rays, initial_scale
from stages.priors.geometry import opencv_c2w

INSTALL_HINT = "pip install --no-deps mini-dust3r==0.1.2 && pip install beartype einops huggingface_hub"
_CLASS = "AsymmetricCroCo3DStereo"
_NAMES = {"inf": math.inf, "True": True, "False": False, "None": None}


def _literal(node: ast.AST) -> Any:
    """Evaluate a literal expression node (numbers, strings, tuples, lists, inf, -x); refuse anything else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_literal(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)):
            return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f"unsupported expression {ast.dump(node)[:60]}")


def parse_model_args(text: str) -> dict[str, Any]:
    """Keyword arguments of the `AsymmetricCroCo3DStereo(...)` string that official checkpoints store."""
    tree = ast.parse(text.strip(), mode="eval").body
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == _CLASS):
        raise ValueError(f"expected {_CLASS}(...)")
    if tree.args or any(k.arg is None for k in tree.keywords):
        raise ValueError("expected keyword arguments only")
    kwargs = {k.arg: _literal(k.value) for k in tree.keywords}
    # as mini-dust3r does: square inputs need neither the many-aspect-ratio embedding nor landscape transposes
    if kwargs.get("patch_embed_cls") == "ManyAR_PatchEmbed":
        kwargs["patch_embed_cls"] = "PatchEmbedDust3R"
    kwargs["landscape_only"] = False
    return kwargs


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Safely read an official checkpoint: (model kwargs, state dict). Faults are BadInput naming the file."""
    if not path.is_file():
        raise BadInput("DUSt3R checkpoint not found", path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails on foreign bytes with many exception types
        raise BadInput(f"not a loadable DUSt3R checkpoint ({exc.__class__.__name__})", path) from exc
    args = ckpt.get("args") if isinstance(ckpt, dict) else None
    state = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(getattr(args, "model", None), str) or not isinstance(state, dict):
        raise BadInput("not an official DUSt3R checkpoint (expected 'args' with a model description and a "
                       "'model' state dict)", path)
    try:
        kwargs = parse_model_args(args.model)
    except (SyntaxError, ValueError) as exc:
        raise BadInput(f"unreadable model description in the checkpoint ({exc})", path) from exc
    if not all(torch.is_tensor(v) for v in state.values()):
        raise BadInput("the checkpoint's 'model' entry is not a state dict of tensors", path)
    return kwargs, state


def _model_class():
    try:
        # it prints a notice about its optional CUDA RoPE kernel and warns about its own type hints
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mini_dust3r.model import AsymmetricCroCo3DStereo
    except ImportError as exc:
        raise BadInput(f"the dust3r backend needs the optional package mini-dust3r ({exc}); install it with: "
                       f"{INSTALL_HINT}") from exc
    return AsymmetricCroCo3DStereo


def load_dust3r(path: Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Build the model a checkpoint describes and load its weights, in eval mode on `device`."""
    kwargs, state = read_checkpoint(path)
    cls = _model_class()
    try:
        model = cls(**kwargs)
    except (TypeError, ValueError, AssertionError, NotImplementedError) as exc:
        raise BadInput(f"the checkpoint describes a model this package cannot build ({exc})", path) from exc
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise BadInput(f"checkpoint weights do not match its model description ({len(result.missing_keys)} "
                       f"missing, {len(result.unexpected_keys)} unexpected)", path)
    return model.eval().to(device)


def model_input_size(model: torch.nn.Module) -> int:
    """The square input size a model was trained at (its longest side, a multiple of the patch size)."""
    img_size = model.croco_args.get("img_size", 512)
    side = max(img_size) if isinstance(img_size, (tuple, list)) else int(img_size)
    patch = int(model.croco_args.get("patch_size", 16))
    return max(patch, side // patch * patch)


def _pairs(n: int) -> list[tuple[int, int]]:
    """Every ordered pair, each one followed by its mirror (DUSt3R then encodes each image once per pair)."""
    return [p for i in range(n) for j in range(i + 1, n) for p in ((i, j), (j, i))]


@torch.inference_mode()
def run_pairs(model: torch.nn.Module, images: Tensor, batch: int = 4,
              steps: Callable[[str], None] | None = None) -> dict[str, Tensor]:
    """DUSt3R on all ordered pairs of images (V, S, S, 3) in [0, 1]; returns, per pair (i, j): `pairs` (P, 2),
    `pts1` (P, S, S, 3) view i in camera i's frame, `pts2` view j in camera i's frame, `conf1`, `conf2`."""
    V, S = images.shape[0], images.shape[1]
    x = images.permute(0, 3, 1, 2) * 2.0 - 1.0  # DUSt3R's ImgNorm: mean 0.5, std 0.5
    pairs = _pairs(V)
    dev = next(model.parameters()).device
    out: dict[str, list[Tensor]] = {"pts1": [], "pts2": [], "conf1": [], "conf2": []}
    batch = max(2, batch // 2 * 2)  # keep mirrored pairs together
    for b in range(0, len(pairs), batch):
        if steps:
            steps(f"dust3r pairs {b + 1}-{min(b + batch, len(pairs))} of {len(pairs)}")
        chunk = pairs[b:b + batch]
        i_idx = [p[0] for p in chunk]
        j_idx = [p[1] for p in chunk]
        shape = torch.tensor([[S, S]] * len(chunk))
        view1 = {"img": x[i_idx].to(dev), "true_shape": shape, "instance": [str(i) for i in i_idx]}
        view2 = {"img": x[j_idx].to(dev), "true_shape": shape, "instance": [str(j) for j in j_idx]}
        with warnings.catch_warnings():  # deprecation notices from its torch.cuda.amp use
            warnings.simplefilter("ignore", FutureWarning)
            pred1, pred2 = model(view1, view2)
        out["pts1"].append(pred1["pts3d"].float().cpu())
        out["conf1"].append(pred1["conf"].float().cpu())
        out["pts2"].append(pred2["pts3d_in_other_view"].float().cpu())
        out["conf2"].append(pred2["conf"].float().cpu())
    result = {k: torch.cat(v) for k, v in out.items()}
    result["pairs"] = torch.tensor(pairs)
    return result


def to_unit_confidence(conf: Tensor) -> Tensor:
    """DUSt3R confidences live in [1, inf); (c - 1) / (c + 1) maps them to [0, 1) with 0.5 at c = 3, the
    threshold DUSt3R's own demo uses."""
    return ((conf - 1.0) / (conf + 1.0)).clamp(0.0, 1.0)


def fuse_pairs(preds: dict[str, Tensor], cameras: Cameras, masks: Tensor, iterations: int = 30,
               agreement: float = 0.02) -> tuple[Tensor, Tensor]:
    """Align every pair to the known cameras and fuse per view: (t (V, S, S) ray distances, conf (V, S, S)).

    `cameras` and `masks` (V, S, S) are at DUSt3R's resolution. A view's confidence is its mapped DUSt3R
    confidence, lowered where its pairs disagree on the depth by more than `agreement` (relative)."""
    pairs = preds["pairs"]
    i, j = pairs[:, 0], pairs[:, 1]
    P, S = len(pairs), masks.shape[-1]
    o, d = cameras.rays()  # (V, S, S, 3)
    fg = (masks > 0.5).float()
    pts = torch.cat([preds["pts1"], preds["pts2"]], 1).reshape(P, -1, 3)
    w1 = torch.log(preds["conf1"].clamp(min=1.0) + 1e-3) * fg[i]
    w2 = torch.log(preds["conf2"].clamp(min=1.0) + 1e-3) * fg[j]
    # each view of a pair weighs the same in total
    w1 = w1 / w1.flatten(1).sum(1).clamp(min=1e-9)[:, None, None]
    w2 = w2 / w2.flatten(1).sum(1).clamp(min=1e-9)[:, None, None]
    weights = torch.cat([w1, w2], 1).reshape(P, -1)
    origins = torch.cat([o[i], o[j]], 1).reshape(P, -1, 3)
    dirs = torch.cat([d[i], d[j]], 1).reshape(P, -1, 3)
    cv = opencv_c2w(cameras)
    rot, centre = cv[i, :3, :3], cv[i, :3, 3]
    scale = initial_scale(pts, weights, rot, centre, origins, dirs)
    sim = align_to_rays(pts, origins, dirs, weights, Similarity(scale, rot, centre), iterations)
    world = sim.apply(pts).reshape(P, 2 * S, S, 3)
    # distance along each pixel's own ray, gathered per view from every pair it appears in
    t_pairs = torch.cat([((world[:, :S] - o[i]) * d[i]).sum(-1), ((world[:, S:] - o[j]) * d[j]).sum(-1)])
    c_pairs = to_unit_confidence(torch.cat([preds["conf1"], preds["conf2"]]))
    owner = torch.cat([i, j])
    V = masks.shape[0]
    num = torch.zeros(V, S, S).index_add_(0, owner, c_pairs * t_pairs)
    den = torch.zeros(V, S, S).index_add_(0, owner, c_pairs)
    t = num / den.clamp(min=1e-9)
    var = torch.zeros(V, S, S).index_add_(0, owner, c_pairs * (t_pairs - t[owner]) ** 2) / den.clamp(min=1e-9)
    count = torch.zeros(V).index_add_(0, owner, torch.ones(len(owner)))
    mean_conf = den / count[:, None, None]
    spread = var.sqrt() / t.abs().clamp(min=1e-6)
    conf = mean_conf * torch.exp(-0.5 * (spread / agreement) ** 2)
    ok = (fg > 0) & (t > 0)
    return torch.where(ok, t, torch.zeros_like(t)), torch.where(ok, conf, torch.zeros_like(conf))


def _resample(x: Tensor, size: int) -> Tensor:
    """(V, C, H, W) to size x size: area averaging down, antialiased bilinear up."""
    if x.shape[-1] == size:
        return x
    if size < x.shape[-1]:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def dust3r_priors(images: Tensor, masks: Tensor, cameras: Cameras, model: torch.nn.Module, size: int,
                  batch: int = 4, steps: Callable[[str], None] | None = None) -> tuple[Tensor, Tensor]:
    """Positional maps (V, size, size, 3) and confidences (V, size, size) for square images (V, H, W, 3) of
    any size (best the capture's own, so DUSt3R sees all the detail there is), with their masks and cameras.
    DUSt3R runs at its own input size; depths along the rays are resampled to `size`."""
    V = images.shape[0]
    S = model_input_size(model)
    if V < 2:
        raise BadInput("the dust3r backend needs at least 2 views")
    img_s = _resample(images.permute(0, 3, 1, 2).float().cpu(), S).permute(0, 2, 3, 1).clamp(0, 1)
    masks_s = _resample(masks[:, None].float().cpu(), S)[:, 0]
    preds = run_pairs(model, img_s, batch, steps)
    if steps:
        steps("align pairs to cameras")
    cams = cameras.to("cpu")
    t, conf = fuse_pairs(preds, cams.resized(S, S), masks_s)
    valid = (conf > 0).float()[:, None]
    w = _resample(valid, size)
    t_out = _resample(t[:, None] * valid, size) / w.clamp(min=1e-6)
    c_out = _resample(conf[:, None], size)[:, 0].clamp(0, 1)
    fg = (_resample(masks[:, None].float().cpu(), size)[:, 0] > 0.5) & (w[:, 0] > 1e-3)
    o, d = cams.resized(size, size).rays()
    pos = torch.where(fg[..., None], o + t_out[:, 0, ..., None] * d, torch.zeros_like(o))
    return pos, torch.where(fg, c_out, torch.zeros_like(c_out))
