"""Running an evaluation: per episode, make the avatar from the 4 inputs, render every target view at its
expression, render the two no-learning baselines, and score all three against the ground truth.

Baselines (no learning):
- `nearest view`: the input photo whose camera looks most like the target's, shown as it is;
- `prior points`: the positional prior's points coloured by their input pixels, splatted as Gaussians of one
  pixel's footprint (the network with a zero-initialised head and its skips is exactly this).

Where the targets have mouth-and-eyes regions (video data, from their landmarks), every method is also scored
inside them (`expr_psnr`), and the avatar is rendered a second time at the neutral code: `expr_gain`, the dB
its targets' codes add there, says whether a real face follows its codes (synthetic heads have
`benchmarks/eval_expression.py` for that).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stages.avatar import AvatarDriver, create_avatar
from stages.capture.input_codes import input_codes
from stages.errors import BadInput
from stages.evaluate.protocol import Episode, capture_episode, dataset_episode
from stages.evaluate.scoring import COLUMNS, Scorer, masked_psnr, project_keypoints
from stages.model import Avat3rNet
from stages.model.checkpoint import load_model
from stages.render import render

METHODS = ("avat3r", "nearest view", "prior points")
NEUTRAL = "avat3r at the neutral code"  # rendered where targets have mouth-and-eyes regions (video data)
Track = Callable[[Iterable, str, int], Iterable]


def _no_track(items: Iterable, desc: str, total: int) -> Iterable:
    return items


def episode_priors(ep: Episode, size: int, prior: str, device: torch.device, features: str = "none",
                   sapiens: Path | None = None, generator: torch.Generator | None = None
                   ) -> tuple[Tensor, Tensor, Tensor | None]:
    """(pos, conf, feat) for the episode's inputs at `size`: the built-in prior, or (synthetic subjects only)
    ground-truth depth back-projected with the small noise training used."""
    from stages.capture import Capture

    cap = Capture(Path("."), ep.inputs.images, ep.inputs.masks, ep.inputs.cameras).resized(size)
    if prior == "gt":
        from stages.synth import render_head
        from stages.train.data import gt_prior

        if ep.identity is None or ep.input_codes is None:
            raise BadInput(f"--prior gt needs synthetic subjects (known identity and input expressions); "
                           f"{ep.subject} has none")
        depth = torch.stack([render_head(ep.identity, ep.input_codes[i], cap.cameras[i])["depth"][0]
                             for i in range(len(cap))])
        pos, conf = gt_prior(depth, cap.masks, cap.cameras, generator)
        return pos, conf, None
    from stages.priors import compute_priors

    pri = compute_priors(cap, backend=prior, resolution=size, device=device, features=features, sapiens=sapiens)
    return pri.pos, pri.conf, pri.feat


def predict(ep: Episode, model: Avat3rNet, meta: dict, device: torch.device, prior: str = "builtin",
            features: str = "none", sapiens: Path | None = None, seed: int = 0, refine: int = 0,
            refine_lr: float | None = None) -> dict[str, Tensor]:
    """Renders of every target view by each method (N, H, W, 3) on black, plus 'gt' and 'inputs'. `refine` > 0
    tunes the avatar to its inputs first, as `reconstruct --refine` does (`stages.refine`)."""
    cfg = model.cfg
    if ep.targets.codes is None or ep.targets.codes.shape[1] != cfg.expr_dim:
        width = None if ep.targets.codes is None else ep.targets.codes.shape[1]
        raise BadInput(f"subject {ep.subject}: expression codes of width {width}, but the checkpoint expects "
                       f"{cfg.expr_space} codes of width {cfg.expr_dim}")
    if cfg.feat_dim > 0 and features == "none":
        raise BadInput("this checkpoint needs semantic features: pass --features sapiens --sapiens FILE")
    size = cfg.image_size
    from stages.capture import Capture

    inputs = Capture(Path("."), ep.inputs.images, ep.inputs.masks, ep.inputs.cameras).resized(size)
    targets = Capture(Path("."), ep.targets.images, ep.targets.masks, ep.targets.cameras).resized(size)
    pos, conf, feat = episode_priors(ep, size, prior, device, features, sapiens,
                                     torch.Generator().manual_seed(seed))
    if cfg.input_codes and ep.input_codes is None:
        raise BadInput(f"subject {ep.subject}: this checkpoint reads the inputs' own expression codes, and the "
                       "dataset has none for them")
    avatar = create_avatar(model, meta, inputs.images, inputs.masks, inputs.cameras, pos, conf,
                           feat if cfg.feat_dim > 0 else None, ep.input_codes if cfg.input_codes else None)
    if refine > 0:
        from stages.refine import refine_avatar

        codes = input_codes(Capture(Path("."), ep.inputs.images, ep.inputs.masks, ep.inputs.cameras,
                                    ep.input_codes, cfg.expr_space if ep.input_codes is not None else None), cfg)
        avatar = refine_avatar(model, avatar, codes, refine, refine_lr)
    driver = AvatarDriver(avatar, model, fast=False)  # scores in float32 on every device
    # A zero-initialised head with both skips on turns the prior into coloured points: the baseline.
    base_net = Avat3rNet(replace(cfg, pos_skip=True, rgb_skip=True)).to(device).eval()
    base = AvatarDriver(avatar, base_net, fast=False)
    black = torch.zeros(3, device=device)
    in_dirs = inputs.cameras.forward_dirs()
    tgt_dirs = targets.cameras.forward_dirs()
    shown_inputs = inputs.images * inputs.masks[..., None]
    out: dict[str, list[Tensor]] = {m: [] for m in METHODS}
    neutral = [] if ep.target_expr_masks is not None else None
    # the same avatar at the neutral code (one decode for every target): what the targets' codes add
    g_neutral = driver.gaussians(np.zeros(cfg.expr_dim, np.float32)) if neutral is not None else None
    for i in range(len(targets)):
        cam = targets.cameras[i].to(device)
        code = ep.targets.codes[i].numpy()
        out["avat3r"].append(render(driver.gaussians(code), cam, background=black).rgb[0].cpu())
        if neutral is not None:
            neutral.append(render(g_neutral, cam, background=black).rgb[0].cpu())
        out["prior points"].append(render(base.gaussians(code), cam, background=black).rgb[0].cpu())
        out["nearest view"].append(shown_inputs[int((in_dirs @ tgt_dirs[i]).argmax())])
    preds = {m: torch.stack(v) for m, v in out.items()}
    if neutral is not None:
        preds[NEUTRAL] = torch.stack(neutral)
    return {**preds, "gt": targets.images * targets.masks[..., None], "inputs": shown_inputs,
            "target_cameras": targets.cameras}


def keypoint_projections(ep: Episode, cameras) -> tuple[list[np.ndarray] | None, tuple[str, ...]]:
    """Ground-truth 3D keypoints of a synthetic subject at each target's expression, projected into its camera."""
    if ep.identity is None:
        return None, ()
    from stages.synth import KEYPOINT_NAMES

    pts = synthetic_keypoints(ep.identity, ep.targets.codes)
    return project_keypoints(pts, cameras.to("cpu")), KEYPOINT_NAMES


def synthetic_keypoints(identity, codes: Tensor) -> Tensor:
    """World keypoints (N, K, 3) of a synthetic head at each code, equal to `stages.synth.head_keypoints` but
    from the rig alone: the keypoints never touch the sampled head (hair, skin grids) that `head_keypoints`
    builds first, which costs seconds to a minute per identity on a CPU."""
    from types import SimpleNamespace

    from stages.synth.head import make_rig
    from stages.synth.keypoints import keypoints

    light = SimpleNamespace(idn=identity, rig=make_rig(identity), device=torch.device("cpu"), _kp_rest=None)
    return torch.stack([keypoints(light, np.asarray(c, np.float32)) for c in codes.cpu().numpy()])


def score_episode(ep: Episode, model: Avat3rNet, meta: dict, device: torch.device, scorer: Scorer,
                  prior: str = "builtin", features: str = "none", sapiens: Path | None = None,
                  seed: int = 0, refine: int = 0, refine_lr: float | None = None) -> tuple[dict, dict]:
    """(report row, images for the grid) for one episode."""
    images = predict(ep, model, meta, device, prior, features, sapiens, seed, refine, refine_lr)
    uv, names = keypoint_projections(ep, images.pop("target_cameras"))
    faces = scorer.target_faces(images["gt"], uv, names)
    faces.face_masks, faces.expr_masks = ep.target_face_masks, ep.target_expr_masks
    row: dict = {"subject": ep.subject, "targets": len(ep.targets)}
    details = {}
    neutral = images.pop(NEUTRAL, None)
    for m in METHODS:
        row[m], details[m] = scorer.score(images[m], images["gt"], faces)
    if neutral is not None:
        at_neutral = masked_psnr(neutral.permute(0, 3, 1, 2).clamp(0, 1).to(scorer.device),
                                 images["gt"].permute(0, 3, 1, 2).to(scorer.device),
                                 ep.target_expr_masks.to(scorer.device))
        row["avat3r"]["expr_gain"] = row["avat3r"]["expr_psnr"] - at_neutral
    if uv is not None and scorer.landmarks is not None:
        from stages.metrics.akd import akd3d_from_landmarks

        own = akd3d_from_landmarks(faces.landmarks, uv, names, [g is not None for g in faces.landmarks])
        details["akd3d_gt"] = own.as_dict()  # the landmarker's own error on the ground truth
    row["detail"] = details
    return row, images


def summarise(rows: list[dict], keys: list[str]) -> dict:
    """Mean over subjects of each metric (subjects where a metric is undefined, e.g. no face, are skipped)."""
    mean = {}
    for m in METHODS:
        mean[m] = {}
        for k in keys:
            vals = [r[m][k] for r in rows if k in r[m] and np.isfinite(r[m][k])]
            mean[m][k] = float(np.mean(vals)) if vals else float("nan")
    return mean


def _report(rows: list[dict], grids: list[dict], scorer: Scorer, meta: dict, protocol: dict) -> dict:
    with_kp = any("akd3d" in r["avat3r"] for r in rows)
    with_face = any("face_psnr" in r["avat3r"] for r in rows)
    with_expr = any("expr_psnr" in r["avat3r"] for r in rows)
    keys = scorer.keys(with_kp, with_face, with_expr)
    own = [r["detail"]["akd3d_gt"]["value"] for r in rows if "akd3d_gt" in r["detail"]]
    own = [f for f in own if np.isfinite(f)]
    return {"checkpoint": meta.get("path"), "checkpoint_sha256": meta.get("sha256"), "protocol": protocol,
            "metrics": {k: COLUMNS[k] for k in keys},
            "unavailable": dict(scorer.unavailable), "subjects": rows, "mean": summarise(rows, keys),
            "akd3d_gt": float(np.mean(own)) if own else None,
            "lpips": "alex" if scorer.lpips_net is not None else "unavailable", "_images": grids}


def _refine_protocol(refine: int, refine_lr: float | None) -> dict:
    """The report's record of test-time refinement (absent when off, so older reports compare as they were)."""
    if refine <= 0:
        return {}
    from stages.refine import step_size

    return {"refine_steps": refine, "refine_lr": step_size(refine_lr)}


def evaluate_synthetic(checkpoint: Path | None, seeds: list[int], device: torch.device, lpips: bool = True,
                       track: Track = _no_track, workdir: Path | None = None, akd: bool = True,
                       csim: bool = True, prior: str = "builtin", scorer: Scorer | None = None, refine: int = 0,
                       refine_lr: float | None = None) -> dict:
    """Seed mode (no --data): one synthetic capture per seed, 4 inputs at 4 different expressions and 8 target
    views at 8 further ones. Test identities come from their own seeds, so the model never saw them."""
    from stages.synth import make_synthetic_capture

    model, meta = load_model(checkpoint, device)
    own = scorer is None
    scorer = scorer or Scorer(device, lpips, akd, csim)
    rows, grids = [], []
    try:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            for seed in track(seeds, "evaluating", len(seeds)):
                cap = make_synthetic_capture(Path(tmp) / f"s{seed}", seed, size=model.cfg.image_size)
                ep = capture_episode(cap)
                ep.subject = f"synthetic seed {seed}"
                row, images = score_episode(ep, model, meta, device, scorer, prior, seed=seed, refine=refine,
                                            refine_lr=refine_lr)
                rows.append(row)
                grids.append(images)
    finally:
        if own:
            scorer.close()
    protocol = {"data": "synthetic seeds", "seeds": list(seeds), "inputs": 4, "targets_per_subject": 8,
                "resolution": model.cfg.image_size, "prior": prior, **_refine_protocol(refine, refine_lr)}
    return _report(rows, grids, scorer, meta, protocol)


def evaluate_dataset(checkpoint: Path | None, data: str, device: torch.device, split: str = "test",
                     n_inputs: int = 4, target_timesteps: int = 1, targets_per_timestep: int = 8,
                     max_subjects: int = 0, lpips: bool = True, akd: bool = True, csim: bool = True,
                     prior: str = "builtin", features: str = "none", sapiens: Path | None = None, seed: int = 0,
                     track: Track = _no_track, scorer: Scorer | None = None, refine: int = 0,
                     refine_lr: float | None = None) -> dict:
    """A dataset's held-out subjects (`--data`: a SPEC section 7 folder, `ava256:PATH`, `nersemble:PATH`)."""
    from stages.datasets import open_dataset

    model, meta = load_model(checkpoint, device)
    if n_inputs > model.cfg.max_views:
        raise BadInput(f"--views {n_inputs}: this model takes 1 to {model.cfg.max_views} views")
    ds = open_dataset(data, model.cfg.image_size)
    space, dim = ds.expression_space
    if dim and dim != model.cfg.expr_dim:
        raise BadInput(f"the dataset's {space} codes have {dim} values, the checkpoint expects {model.cfg.expr_space} "
                       f"codes of {model.cfg.expr_dim}", ds.root)
    subjects = ds.subjects(split)
    if max_subjects > 0:
        subjects = subjects[:max_subjects]
    if not subjects:
        raise BadInput(f"no subjects in split '{split}'", ds.root)
    own = scorer is None
    scorer = scorer or Scorer(device, lpips, akd, csim)
    rows, grids = [], []
    try:
        for k, name in enumerate(track(subjects, "evaluating", len(subjects))):
            from stages.train.data import stable_seed

            g = torch.Generator().manual_seed(stable_seed(seed, k, 9001))
            if ds.kind == "video":  # self-reenactment: inputs early in the clip, later frames as targets
                from stages.evaluate.protocol import video_episode

                ep = video_episode(ds, name, n_inputs, targets_per_timestep)
            else:
                ep = dataset_episode(ds, name, g, n_inputs, target_timesteps, targets_per_timestep)
            row, images = score_episode(ep, model, meta, device, scorer, prior, features, sapiens, seed, refine,
                                        refine_lr)
            row["inputs"] = ep.inputs.labels
            row["target_views"] = ep.targets.labels
            rows.append(row)
            grids.append(images)
    finally:
        if own:
            scorer.close()
    if ds.kind == "video":
        protocol_kind = {"kind": "self-reenactment", "source_part": getattr(ds, "source_part", None),
                         "targets_per_clip": targets_per_timestep}
    else:
        protocol_kind = {"kind": "multi-view"}
    protocol = {"data": str(data), "split": split, **protocol_kind, "inputs": n_inputs,
                "target_timesteps": target_timesteps,
                "targets_per_timestep": targets_per_timestep, "resolution": model.cfg.image_size, "prior": prior,
                "features": features, "seed": seed, **_refine_protocol(refine, refine_lr)}
    return _report(rows, grids, scorer, meta, protocol)
