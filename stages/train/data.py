"""Training batches: 4 input views at different timesteps + 8 supervision views at one target expression,
with the positional prior attached, from the on-the-fly synthetic heads (or a dataset on disk)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.capture import Capture
from stages.datasets.base import HeadDataset
from stages.train.recipe import SWITCHES, Recipe

if TYPE_CHECKING:
    import numpy

    from stages.synth.identity import HeadIdentity


@dataclass
class Batch:
    images: Tensor  # (B, V, H, W, 3)
    masks: Tensor  # (B, V, H, W)
    cameras: Cameras  # B*V input cameras
    pos: Tensor  # (B, V, H, W, 3)
    conf: Tensor  # (B, V, H, W)
    codes: Tensor  # (B, E) target expressions
    target_rgb: Tensor  # (B, T, H, W, 3), straight (not premultiplied) colour
    target_alpha: Tensor  # (B, T, H, W)
    target_cameras: Cameras  # B*T
    # (B, T, H, W) 1 where the target view changes with the expression (synthetic pool only): the region a
    # model that ignores the code gets wrong, weighted up in the loss and scored on its own.
    target_expr_mask: Tensor | None = None
    # (B, T, E) one code per target view (monocular video: every supervision frame has its own expression);
    # None when each avatar's targets share `codes`
    target_codes: Tensor | None = None
    # (B,) True for examples whose cameras are tracked head poses: their colour loss forgives a pixel of shift
    shift_tolerant: Tensor | None = None
    # (B, V, E) each input view's own expression (every source knows it); read by networks with `input_codes`
    input_codes: Tensor | None = None
    # (B,) True for examples whose T targets are T/2 views at the target code, then the same views at a second
    # code (`--expr-contrast`): the change between the halves is supervised as well as each image
    contrast: Tensor | None = None
    # (B, T, H, W) in [0, 1]: how much of each target pixel its video frame shows (`--video-frame-only`; 1 for
    # other examples); where it is 0 the losses put the target in place of the render: no error, no gradient
    target_valid: Tensor | None = None


def expression_region(rgb: Tensor, alpha: Tensor, t_target: int, threshold: float = 0.06) -> Tensor:
    """rgb (T, V, H, W, 3), alpha (T, V, H, W) of V views at every timestep → (V, H, W) mask of the pixels
    whose premultiplied colour at `t_target` differs from some other timestep by more than `threshold`."""
    pre = rgb.float() * alpha.float()[..., None]
    diff = (pre - pre[t_target : t_target + 1]).abs().amax(dim=-1).amax(dim=0)
    return (diff > threshold).float()


def gt_prior(depth: Tensor, alpha: Tensor, cameras: Cameras, generator: torch.Generator | None = None,
             noise_m: float = 0.002) -> tuple[Tensor, Tensor]:
    """A stand-in for a learned prior: ground-truth depth back-projected, with a little noise."""
    o, d = cameras.rays()
    fwd = cameras.forward_dirs()[:, None, None, :]
    dist = depth / (d * fwd).sum(-1).clamp(min=1e-6)
    pos = o + d * dist[..., None]
    if noise_m > 0:
        noise = torch.randn(pos.shape, generator=generator, device="cpu").to(pos.device) * noise_m
        pos = pos + noise
    conf = ((alpha > 0.5) & (depth > 0)).float()
    return pos * conf[..., None], conf


def builtin_prior(images: Tensor, masks: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """The same built-in multi-view prior the toolkit uses at test time."""
    from stages.priors import compute_priors

    cap = Capture(Path("."), images, masks, cameras)
    pri = compute_priors(cap, backend="builtin", resolution=images.shape[1], device=images.device)
    return pri.pos.to(images.device), pri.conf.to(images.device)


def example_prior(ex: dict) -> tuple[Tensor, Tensor]:
    """The prior of one example's inputs: the face-mesh backend where the example carries landmarks detected
    beforehand (`priors --backend facemesh` at test time), else the built-in one."""
    if ex.get("input_face_landmarks") is None:
        return builtin_prior(ex["input_rgb"], ex["input_alpha"], ex["input_cameras"])
    from stages.priors.face_prior import face_mesh_priors

    images = ex["input_rgb"]
    pos, conf, _, _ = face_mesh_priors(images, ex["input_alpha"], ex["input_cameras"],
                                       landmarks=ex["input_face_landmarks"], face=ex["canonical_face"])
    return pos.float().to(images.device), conf.float().to(images.device)


def narrow_cameras(base: Cameras, n: int, generator: torch.Generator, max_spread_deg: float = 15.0) -> Cameras:
    """n cameras orbiting the head centre (the world origin) within a few degrees of `base`: the frames of a
    phone video of a head that hardly turns. Real monocular captures look like this, and there the built-in
    prior's stereo has almost no baseline; studio inputs chosen k-farthest never show the model that case."""
    from stages.synth.framing import local_rotation

    spread = math.radians(3.0 + (max_spread_deg - 3.0) * float(torch.rand(1, generator=generator)))
    angles = (torch.rand(n, 2, generator=generator, dtype=torch.float64) * 2 - 1) * spread
    c2w = base.c2w[0].double()
    out = []
    for yaw, pitch in angles.tolist():
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = local_rotation(yaw, pitch)
        out.append((m.to(c2w.device) @ c2w).to(base.c2w.dtype))
    return Cameras(torch.stack(out), base.fx.expand(n), base.fy.expand(n), base.cx.expand(n), base.cy.expand(n),
                   base.width, base.height)


def with_input_views(targets: list, inputs: list, k: int, g: torch.Generator) -> list:
    """`k` of the inputs (drawn with `g`) in front of `targets`, which then keep only their first
    n - k entries: supervision at the input cameras teaches the network to reproduce what it was shown (the
    targets otherwise never sit at an input camera, and blur there costs nothing in training). k = 0 returns
    `targets` unchanged and draws nothing, so older runs see exactly their old data."""
    if k <= 0:
        return targets
    k = min(k, len(inputs), len(targets))
    chosen = [inputs[i] for i in torch.randperm(len(inputs), generator=g)[:k].tolist()]
    return chosen + targets[: len(targets) - k]


class SynthSource:
    """Synthetic heads drawn on the fly: example i of step s is a pure function of (seed, s, rank, i), so a
    resumed run sees exactly the data it would have seen."""

    def __init__(self, size: int, n_inputs: int, n_supervision: int, n_cameras: int, seed: int,
                 consistent_inputs: bool = False):
        self.size, self.n_inputs, self.n_supervision = size, n_inputs, n_supervision
        self.n_cameras, self.seed, self.consistent = n_cameras, seed, consistent_inputs

    def example(self, step: int, rank: int, index: int, device: torch.device) -> dict:
        from stages.synth import sample_training_example

        g = torch.Generator().manual_seed(stable_seed(self.seed, step, rank, index))
        kwargs = {"consistent_inputs": True} if self.consistent else {}
        return sample_training_example(g, n_inputs=self.n_inputs, n_supervision=self.n_supervision,
                                       size=self.size, device=device, n_cameras=self.n_cameras, **kwargs)


def stable_seed(*parts: int) -> int:
    """A stable 62-bit seed from integers (Python's hash of an int tuple does not depend on PYTHONHASHSEED)."""
    return hash(tuple(int(p) for p in parts)) % (2**62)


class SynthPool:
    """A GPU-resident bank of synthetic subjects. Each subject is rendered once at `timesteps` expressions ×
    `cameras` studio views, and `configs` input configurations (4 views by k-farthest viewpoint sampling, each at
    a different timestep) get their positional prior computed once; examples then pair one configuration with
    8 other views at another timestep. Building a head and running the prior cost far more than sampling views,
    so this keeps the GPU learning. Slots refresh on a staggered schedule; a slot's content at a step is a pure
    function of (seed, slot, step), so a resumed run sees exactly the same data."""

    def __init__(self, size: int, n_inputs: int, n_supervision: int, seed: int, slots: int = 32,
                 timesteps: int = 8, cameras: int = 16, lifetime: int = 400, consistent_inputs: bool = False,
                 prior: str = "builtin", configs: int = 6, recipe: Recipe | None = None,
                 recipe_share: float = 1.0, input_view_targets: int = 0, narrow_share: float = 0.0,
                 contrast: bool = False, tracked: numpy.ndarray | None = None, tracked_share: float = 0.0,
                 tracked_mix: float = 0.0):
        if cameras < n_inputs + n_supervision:
            raise ValueError("the studio needs at least n_inputs + n_supervision cameras")
        self.size, self.n_inputs, self.n_supervision, self.seed = size, n_inputs, n_supervision, seed
        self.slots, self.timesteps, self.cameras, self.lifetime = slots, timesteps, cameras, lifetime
        self.consistent, self.prior, self.configs = consistent_inputs, prior, configs
        self.recipe, self.recipe_share = recipe or Recipe(), recipe_share
        self.input_view_targets, self.narrow_share = input_view_targets, narrow_share
        self.contrast = contrast and timesteps > 1 and n_supervision > 1
        self.tracked, self.tracked_share = tracked, (tracked_share if tracked is not None else 0.0)
        self.tracked_mix = tracked_mix
        self._cache: dict[int, tuple[int, dict]] = {}
        self.built = 0

    def _input_config(self, g: torch.Generator, cams: Cameras) -> tuple[list[int], list[int], int]:
        from stages.synth.studio import farthest_views

        views = farthest_views(cams.forward_dirs().cpu(), self.n_inputs, g)
        t_target = int(torch.randint(0, self.timesteps, (1,), generator=g))
        if self.consistent:
            return views, [t_target] * self.n_inputs, t_target
        others = [t for t in range(self.timesteps) if t != t_target]
        perm = torch.randperm(len(others), generator=g).tolist()
        return views, [others[perm[i % len(others)]] for i in range(self.n_inputs)], t_target

    def _build(self, slot: int, generation: int, device: torch.device, rank: int = 0) -> dict:
        import numpy as np

        from stages.synth import render_head, sample_expression, sample_identity, studio_cameras

        # each GPU of a distributed run holds its own subjects (rank 0 keeps the single-GPU stream)
        parts = (self.seed, slot, generation, 7) + ((rank,) if rank else ())
        sid = stable_seed(*parts)
        identity = sample_identity(sid)
        rng = np.random.default_rng(sid)
        g = torch.Generator().manual_seed(sid)
        cam_seed = int(rng.integers(0, 2**31 - 1))
        recipe = self.recipe
        if recipe.any and self.recipe_share < 1.0:  # a share of subjects stays in the original distribution
            share = torch.rand(1, generator=torch.Generator().manual_seed(stable_seed(sid, 99)))
            recipe = recipe if float(share) < self.recipe_share else Recipe()
        identity = widened_identity(identity, recipe, sid)
        if recipe.cameras:
            from stages.synth.framing import wide_cameras

            cams = wide_cameras(self.cameras, self.size, _switch_generator(sid, "cameras")).to(device)
        else:
            cams = studio_cameras(self.cameras, self.size, seed=cam_seed).to(device)
        exprs = np.stack([sample_expression(rng) for _ in range(self.timesteps)])
        if self.tracked_share > 0:  # own generator: every other draw of the subject stays as without it
            tg = np.random.default_rng(stable_seed(sid, 101))
            wear = tg.random(self.timesteps) < self.tracked_share
            rows = tg.integers(0, len(self.tracked), self.timesteps)
            worn = self.tracked[rows]
            if self.tracked_mix > 0:  # drawn after the rows: without blends the codes are the same
                blend = tg.random(self.timesteps) < self.tracked_mix
                other = self.tracked[tg.integers(0, len(self.tracked), self.timesteps)]
                lam = tg.random(self.timesteps)[:, None].astype(np.float32)
                worn = np.where(blend[:, None], lam * worn + (1 - lam) * other, worn)
            exprs[wear] = worn[wear]
        rgb, alpha, depth = [], [], []
        for t in range(self.timesteps):
            out = render_head(identity, exprs[t], cams, device=device)
            rgb.append(out["rgb"].half())
            alpha.append(out["alpha"].half())
            depth.append(out["depth"].float())
        rgb_t, alpha_t, depth_t = torch.stack(rgb), torch.stack(alpha), torch.stack(depth)
        configs = []
        for k in range(self.configs):
            views, t_in, t_target = self._input_config(g, cams)
            ti, vi = torch.tensor(t_in), torch.tensor(views)
            images, masks = rgb_t[ti, vi].float(), alpha_t[ti, vi].float()
            in_cams, in_depth = cams[views], depth_t[ti, vi]
            narrow = self.narrow_share > 0 and float(torch.rand(1, generator=torch.Generator().manual_seed(
                stable_seed(sid, k, 31)))) < self.narrow_share
            if narrow:  # a clip that hardly turns: its own cameras near one studio view, rendered here
                in_cams = narrow_cameras(cams[views[0]], self.n_inputs, torch.Generator().manual_seed(
                    stable_seed(sid, k, 32))).to(device)
                outs = [render_head(identity, exprs[t], in_cams[i:i + 1], device=device) for i, t in enumerate(t_in)]
                images = torch.cat([o["rgb"] for o in outs]).float()
                masks, in_depth = torch.cat([o["alpha"] for o in outs]).float(), torch.cat([o["depth"] for o in outs])
                views = []  # every studio camera may be a target, those beside the inputs included
            extra: dict = {}
            if recipe.any:
                images, masks, in_cams, extra = corrupt_inputs(images, masks, in_cams, recipe, sid, k)
            if narrow:
                extra = {"images": images.half(), "masks": masks.half(), "cameras": in_cams, **extra}
            if self.prior == "gt":
                pos, conf = gt_prior(in_depth, masks, in_cams, g)
            else:
                pos, conf = builtin_prior(images, masks, in_cams)
            configs.append({"views": views, "t_in": t_in, "t_target": t_target, "pos": pos.half(),
                            "conf": conf.half(), **extra})
        self.built += 1
        return {"rgb": rgb_t, "alpha": alpha_t, "cameras": cams,
                "expr": torch.from_numpy(exprs).float().to(device), "configs": configs}

    def subject(self, slot: int, step: int, device: torch.device, rank: int = 0) -> dict:
        offset = slot * self.lifetime // self.slots
        generation = (step + offset) // self.lifetime
        hit = self._cache.get(slot)
        if hit is None or hit[0] != generation:
            self._cache[slot] = (generation, self._build(slot, generation, device, rank))
        return self._cache[slot][1]

    def example(self, step: int, rank: int, index: int, device: torch.device) -> dict:
        g = torch.Generator().manual_seed(stable_seed(self.seed, step, rank, index))
        slot = int(torch.randint(0, self.slots, (1,), generator=g))
        s = self.subject(slot, step, device, rank)
        cfg = s["configs"][int(torch.randint(0, len(s["configs"]), (1,), generator=g))]
        cams: Cameras = s["cameras"]
        rest = [c for c in range(len(cams)) if c not in cfg["views"]]
        targets = [rest[i] for i in torch.randperm(len(rest), generator=g)[: self.n_supervision].tolist()]
        targets = with_input_views(targets, list(cfg["views"]), self.input_view_targets, g)
        ti, vi, t = torch.tensor(cfg["t_in"]), torch.tensor(cfg["views"]), cfg["t_target"]
        steps = [t] * len(targets)

        def region(views: list[int], u: int) -> Tensor:
            return expression_region(s["rgb"][:, views], s["alpha"][:, views], u)

        if self.contrast:  # the first half of the views again at a second expression: [e1 views | e2 views]
            others = [u for u in range(self.timesteps) if u != t]
            t2 = others[int(torch.randint(0, len(others), (1,), generator=g))]
            half = targets[: len(targets) // 2]
            targets, steps = half + half, [t] * len(half) + [t2] * len(half)
            expr_mask = torch.cat([region(half, t), region(half, t2)])
        else:
            expr_mask = region(targets, t)
        st, vt = torch.tensor(steps), torch.tensor(targets)
        target_rgb = s["rgb"][st, vt].float()
        if "colour" in cfg:  # the capture's colour response, shared by its inputs and targets
            from stages.train.photometric import apply_colour

            target_rgb = apply_colour(target_rgb, cfg["colour"])
        example = {
            "input_rgb": cfg["images"].float() if "images" in cfg else s["rgb"][ti, vi].float(),
            "input_alpha": cfg["masks"].float() if "masks" in cfg else s["alpha"][ti, vi].float(),
            "input_cameras": cfg.get("cameras", cams[cfg["views"]]), "input_expr": s["expr"][ti],
            "prior_pos": cfg["pos"].float(), "prior_conf": cfg["conf"].float(),
            "target_rgb": target_rgb, "target_alpha": s["alpha"][st, vt].float(),
            "target_cameras": cams[targets], "target_expr": s["expr"][t],
            "target_expr_mask": expr_mask,
        }
        if self.contrast:
            example["target_codes"], example["contrast"] = s["expr"][st], True
        return example


def _switch_generator(sid: int, switch: str, config: int = -1) -> torch.Generator:
    """One generator per (subject, switch, configuration): turning a switch on or off never shifts another
    switch's random stream, nor the pool's own."""
    return torch.Generator().manual_seed(stable_seed(sid, SWITCHES.index(switch) + 101, config))


def widened_identity(identity: HeadIdentity, recipe: Recipe, sid: int) -> HeadIdentity:
    """The subject's identity with the recipe's identity and lighting switches applied."""
    from stages.synth.variety import vary_lighting, widen_identity

    if recipe.identity:
        identity = widen_identity(identity, stable_seed(sid, SWITCHES.index("identity") + 101))
    if recipe.lighting:
        identity = vary_lighting(identity, stable_seed(sid, SWITCHES.index("lighting") + 101))
    return identity


def corrupt_inputs(images: Tensor, masks: Tensor, cams: Cameras, recipe: Recipe, sid: int,
                   config: int) -> tuple[Tensor, Tensor, Cameras, dict]:
    """One input configuration as a real capture would deliver it: a room behind the head, the camera's colour
    response and degradations, a segmenter's mask and head-pose cameras, in that (physical) order. Returns the
    images, masks and cameras the model and the prior see, and what the pool stores for the configuration
    (the targets get only the global colour transform)."""
    from stages.train import augment, photometric

    extra: dict = {}
    coverage = masks
    if recipe.backgrounds:
        images = augment.composite_backgrounds(images, coverage, _switch_generator(sid, "backgrounds", config))
    if recipe.photometric:
        g = _switch_generator(sid, "photometric", config)
        colour = photometric.sample_colour(g)
        images = photometric.degrade_inputs(images, colour, g)
        extra["colour"] = colour.to(images.device)
    if recipe.mask_noise:
        masks = augment.noisy_masks(masks, _switch_generator(sid, "mask_noise", config))
    if recipe.camera_noise:
        cams = augment.noisy_cameras(cams, _switch_generator(sid, "camera_noise", config))
    if recipe.backgrounds or recipe.photometric:
        extra["images"] = images.half()
    if recipe.mask_noise:
        extra["masks"] = masks.half()
    if recipe.camera_noise:
        extra["cameras"] = cams
    return images, masks, cams, extra


class DiskSource:
    """Examples from a dataset on disk, read through `stages.datasets`: `data` is a `--data` spec (a SPEC
    section 7 folder as `avat3r synth` writes, `synth:PATH`, `ava256:PATH` or `nersemble:PATH`) or an open
    HeadDataset. Examples follow the same protocol as the synthetic pool: 4 inputs from k-farthest cameras, each
    at a timestep other than the target's, 8 other cameras at the target timestep. Only timesteps with an
    expression code are used. Images are read lazily, one example at a time; example i of step s is a pure
    function of (seed, s, rank, i), so it can run in DataLoader workers (`stages.datasets.loader`)."""

    def __init__(self, data: str | Path | HeadDataset, size: int, n_inputs: int, n_supervision: int, seed: int,
                 split: str = "train", consistent_inputs: bool = False, input_view_targets: int = 0):
        from stages.datasets import open_dataset
        from stages.errors import BadInput

        self.dataset = data if isinstance(data, HeadDataset) else open_dataset(data, size)
        self.size, self.seed = size, seed
        self.n_inputs, self.n_supervision, self.consistent = n_inputs, n_supervision, consistent_inputs
        self.input_view_targets = input_view_targets
        if self.dataset.expression_space[1] == 0:
            raise BadInput("the dataset has no expression codes to train with (Ava256: pass codes=DIR; "
                           "NeRSemble: sequences need FLAME tracking)", self.dataset.root)
        self.names = self.dataset.subjects(split)
        if not self.names:
            raise BadInput(f"no subjects in split '{split}'", self.dataset.root)
        self._timesteps: dict[str, list[int]] = {}

    def _usable(self, name: str) -> list[int]:
        """The subject's timesteps that have a code (checked once per subject)."""
        if name not in self._timesteps:
            from stages.errors import BadInput

            ts = [t for t in self.dataset.timesteps(name) if self.dataset.codes(name, t) is not None]
            n_cams = len(self.dataset.camera_names(name))
            if not ts:
                raise BadInput(f"subject {name} has no timestep with an expression code", self.dataset.root)
            if n_cams < self.n_inputs + self.n_supervision:
                raise BadInput(f"subject {name} has {n_cams} cameras, need {self.n_inputs + self.n_supervision}",
                               self.dataset.root)
            self._timesteps[name] = ts
        return self._timesteps[name]

    def _load(self, name: str, t: int, v: int) -> tuple[Tensor, Tensor, Tensor]:
        rgb, mask = self.dataset.load(name, t, v)
        code = self.dataset.codes(name, t)
        return torch.from_numpy(rgb), torch.from_numpy(mask), torch.as_tensor(code, dtype=torch.float32)

    def example(self, step: int, rank: int, index: int, device: torch.device) -> dict:
        from stages.synth.studio import farthest_views

        g = torch.Generator().manual_seed(stable_seed(self.seed, step, rank, index))
        name = self.names[int(torch.randint(0, len(self.names), (1,), generator=g))]
        ts = self._usable(name)
        t_target = ts[int(torch.randint(0, len(ts), (1,), generator=g))]
        cams: Cameras = self.dataset.cameras(name, t_target)
        views = farthest_views(cams.forward_dirs(), self.n_inputs, g)
        others = [t for t in ts if t != t_target] or [t_target]
        if self.consistent:
            t_in = [t_target] * self.n_inputs
        else:
            perm = torch.randperm(len(others), generator=g).tolist()
            t_in = [others[perm[i % len(others)]] for i in range(self.n_inputs)]
        rest = [v for v in range(len(cams)) if v not in views]
        targets = [rest[i] for i in torch.randperm(len(rest), generator=g)[: self.n_supervision].tolist()]
        targets = with_input_views(targets, list(views), self.input_view_targets, g)
        ins = [self._load(name, t, v) for t, v in zip(t_in, views, strict=True)]
        tgs = [self._load(name, t_target, v) for v in targets]
        in_cams = Cameras.cat([self.dataset.cameras(name, t)[v] for t, v in zip(t_in, views, strict=True)])
        return {
            "input_rgb": torch.stack([x[0] for x in ins]).to(device),
            "input_alpha": torch.stack([x[1] for x in ins]).to(device),
            "input_cameras": in_cams.to(device), "input_expr": torch.stack([x[2] for x in ins]).to(device),
            "target_rgb": torch.stack([x[0] for x in tgs]).to(device),
            "target_alpha": torch.stack([x[1] for x in tgs]).to(device),
            "target_cameras": cams[targets].to(device), "target_expr": tgs[0][2].to(device),
        }


def collate(examples: list[dict], prior: str, generator: torch.Generator | None = None,
            memo: dict[str, tuple[Tensor, Tensor]] | None = None) -> Batch:
    """Stack examples and attach the positional prior of each example's input views. An example with a
    `prior_key` (a fixed input set: video clips' configurations) has its built-in prior computed once into
    `memo` and reused."""
    poss, confs = [], []
    for ex in examples:
        key = ex.get("prior_key") if prior != "gt" else None
        if "prior_pos" in ex:  # precomputed by the pool
            p, c = ex["prior_pos"], ex["prior_conf"]
        elif memo is not None and key is not None:
            if key not in memo:
                memo[key] = example_prior(ex)
            p, c = memo[key]
        elif prior == "gt":
            p, c = gt_prior(ex["input_depth"], ex["input_alpha"], ex["input_cameras"], generator)
        else:
            p, c = example_prior(ex)
        poss.append(p)
        confs.append(c)
    return Batch(
        images=torch.stack([ex["input_rgb"] for ex in examples]),
        masks=torch.stack([ex["input_alpha"] for ex in examples]),
        cameras=Cameras.cat([ex["input_cameras"] for ex in examples]),
        pos=torch.stack(poss), conf=torch.stack(confs),
        codes=torch.stack([torch.as_tensor(ex["target_expr"]).float() for ex in examples]).to(poss[0].device),
        target_rgb=torch.stack([ex["target_rgb"] for ex in examples]),
        target_alpha=torch.stack([ex["target_alpha"] for ex in examples]),
        target_cameras=Cameras.cat([ex["target_cameras"] for ex in examples]),
        target_expr_mask=(torch.stack([ex["target_expr_mask"] for ex in examples])
                          if all("target_expr_mask" in ex for ex in examples) else None),
        target_codes=_per_target_codes(examples),
        shift_tolerant=(torch.tensor([bool(ex.get("shift_tolerant")) for ex in examples], device=poss[0].device)
                        if any(ex.get("shift_tolerant") for ex in examples) else None),
        contrast=(torch.tensor([bool(ex.get("contrast")) for ex in examples], device=poss[0].device)
                  if any(ex.get("contrast") for ex in examples) else None),
        input_codes=(torch.stack([torch.as_tensor(ex["input_expr"]).float() for ex in examples]).to(poss[0].device)
                     if all("input_expr" in ex for ex in examples) else None),
        target_valid=(torch.stack([ex["target_valid"] if "target_valid" in ex else torch.ones_like(ex["target_alpha"])
                                   for ex in examples]) if any("target_valid" in ex for ex in examples) else None),
    )


def _per_target_codes(examples: list[dict]) -> Tensor | None:
    """(B, T, E) when some example has a code per target (video), the others' one code repeated; else None."""
    if not any("target_codes" in ex for ex in examples):
        return None
    out = []
    for ex in examples:
        T = ex["target_rgb"].shape[0]
        codes = ex.get("target_codes")
        out.append(torch.as_tensor(codes).float() if codes is not None
                   else torch.as_tensor(ex["target_expr"]).float()[None].expand(T, -1))
    return torch.stack(out)
