"""The built-in geometry prior: per-view positional maps from the known cameras and masks, no weights needed.

Skin is nearly textureless and the views are far apart, so matching alone leaves holes. The pipeline is:
1. a visual hull carved from the masks gives every foreground pixel an interval along its ray that holds the
   surface (complete but coarse);
2. a first sweep over that interval (NCC over windows, best k views, costs averaged over a wide window, as
   the hypotheses follow the hull's shape) finds the surface wherever there is texture or shading; a second
   one re-tests a few hypotheses around that estimate with a narrower window;
3. views cross-check each other's depths (forward-backward reprojection); depths no other view confirms are
   replaced by the hull depth plus the stereo-minus-hull residual filled in from confirmed neighbours, so
   the map stays complete and smooth;
4. a second round (`cycles`) sweeps again around that filled surface, which is closer than the hull, then
   at each finer resolution up to the output, and verifies and fills once more.
Confidence: confirmed depths get 0.6-1 (by matching score and the sharpness of the cost minimum of the first
sweep), filled ones 0.05-0.45 (by the share of confirmed pixels around them); 0 off the mask. So
confidence > 0.5 means "measured by stereo and confirmed by another view".
Everything is batched over views and view pairs, and runs the same on CPU and CUDA without host syncs in the
sweeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.cameras import Cameras
from stages.priors.consistency import consistent_views
from stages.priors.fill import push_pull
from stages.priors.geometry import scene_bounds
from stages.priors.hull import carve, refine_entry
from stages.priors.sweep import DepthEstimate, box_filter, select, sweep_cost

LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Pass:
    """One depth sweep at `size`: `hypotheses` along each ray over the hull interval (span 0) or over
    +-span steps of the previous sweep around its estimate."""

    size: int
    hypotheses: int
    span: float
    window: int
    aggregate: int


@dataclass(frozen=True)
class BuiltinSettings:
    """Knobs of the built-in prior; all of them are recorded in priors metadata."""

    coarse: int = 128  # resolution of the first sweeps
    hypotheses: int = 48  # depth hypotheses of the first, full-range sweep
    refine_hypotheses: int = 7  # hypotheses of each later sweep, over +-refine_span steps of the one before
    refine_span: float = 2.0
    window_coarse: int = 5  # NCC window (pixels) at the coarse resolution
    window_fine: int = 7  # NCC window at finer resolutions
    aggregate_first: int = 15  # cost aggregation window of the first sweep (follows the hull: wide)
    aggregate: int = 9  # cost aggregation window of later sweeps (follow the estimate: narrower)
    top_k: int = 2  # source views aggregated per pixel (the best k)
    hull_samples: int = 96  # samples per ray when carving the hull
    mask_level: float = 0.4  # masks are cut here (bilinear); below 0.5 grows them a fraction of a pixel
    search_front: float = 0.03  # search starts this fraction of the bounding radius in front of the hull
    search_depth: float = 0.35  # and ends this fraction behind it (or where the ray leaves the hull)
    score_low: float = 0.1  # aggregated NCC at or below this never counts as a match
    score_high: float = 0.8  # NCC at or above this is a perfect match
    margin_ref: float = 0.1  # a cost margin this large (see sweep.select) is a perfectly sharp minimum
    agree_px: float = 1.0  # views agree within this many pixels (at 256²; scaled with the resolution)
    agree_rel: float = 0.005  # and within this fraction of the distance to the camera
    cycles: int = 2  # sweep-verify-fill rounds; later rounds start from the previous round's filled depth
    fine_every_cycle: bool = False  # False: only the last round goes beyond the coarse resolution

    def describe(self) -> dict[str, str]:
        return {f"builtin.{k}": str(v) for k, v in asdict(self).items()}

    def plan(self, size: int) -> list[Pass]:
        """The sweeps, coarse to fine, for output resolution `size`."""
        c = min(self.coarse, size)
        passes = [Pass(c, self.hypotheses, 0.0, self.window_coarse, self.aggregate_first),
                  Pass(c, self.refine_hypotheses, self.refine_span, self.window_coarse, self.aggregate)]
        level = c
        while level < size:
            level = min(level * 2, size)
            passes.append(Pass(level, self.refine_hypotheses, self.refine_span, self.window_fine,
                               self.aggregate))
        return passes


def _resize(x: Tensor, size: int) -> Tensor:
    """(V, C, H, W) to size² with area averaging down, bilinear up."""
    if x.shape[-1] == size:
        return x
    if size < x.shape[-1]:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _upsample_valid(x: Tensor, valid: Tensor, size: int) -> Tensor:
    """Resample (V, H, W) values known only where `valid`, without bleeding in the unknown ones."""
    w = _resize(valid[:, None].to(x), size)
    v = _resize((x * valid)[:, None], size)
    return (v / w.clamp(min=1e-6))[:, 0]


def _sweep(p: Pass, gray: Tensor, cameras: Cameras, hyp: Tensor, fg: Tensor, top_k: int) -> DepthEstimate:
    cams = cameras.resized(p.size, p.size)
    cost = sweep_cost(_resize(gray, p.size), cams, hyp, p.window, top_k, p.aggregate, fg).cost
    return select(cost, hyp)


def _verify_and_fill(cameras: Cameras, t: Tensor, score: Tensor, fg: Tensor, t_hull: Tensor,
                     s: BuiltinSettings) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Keep depths that another view confirms and that matched at all; replace the rest by the base depth
    (the hull's, or a guide surface's) plus the stereo-minus-base residual filled in from the kept ones.
    Returns (t, verified, quality, agree)."""
    size = t.shape[-1]
    agree = consistent_views(cameras, t, fg, max_px=s.agree_px * max(1.0, size / 256), max_rel=s.agree_rel)
    quality = ((score - s.score_low) / (s.score_high - s.score_low)).clamp(0.0, 1.0)
    verified = fg & (agree >= 1) & (quality > 0)
    good = verified.float()[:, None]
    residual = push_pull((t - t_hull)[:, None] * good, good)[:, 0]
    return torch.where(verified, t, t_hull + residual), verified, quality, agree


def builtin_priors(images: Tensor, masks: Tensor, cameras: Cameras, settings: BuiltinSettings | None = None,
                   steps: Callable[[str], None] | None = None, bounds: tuple[Tensor, Tensor] | None = None,
                   guide: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Positional maps (V, H, W, 3) and confidences (V, H, W) for images (V, H, W, 3) and masks (V, H, W).

    Also returns diagnostics (hull depth, stereo depth, agreeing-view counts, verified pixels, the support
    of filled ones) for previews, benchmarks and the face-mesh backend. `steps`, when given, is called with
    the name of each stage as it starts (progress reporting). `bounds` is `scene_bounds(cameras, masks)` when
    the caller has it: the only step that synchronises a GPU, so passing it makes the rest recordable as a
    CUDA graph (`stages.create`). `guide` (ray distances (V, H, W), valid (V, H, W) bool) is a surface
    known better than the hull where valid (the face mesh): unconfirmed depths are filled from it instead of
    the hull, and the second round's sweep starts there."""
    s = settings or BuiltinSettings()
    note = steps or (lambda name: None)
    V, size = images.shape[0], images.shape[1]
    dev = images.device
    gray = sum(w * images[..., i] for i, w in enumerate(LUMA))[:, None]  # (V, 1, H, W)
    passes = s.plan(size)
    fg_out = masks > 0.5
    o, d = cameras.rays()

    note("hull")
    centre, radius = scene_bounds(cameras, masks) if bounds is None else bounds
    c0 = passes[0].size
    fg_c0 = _resize(masks[:, None], c0)[:, 0] > 0.5
    hull = carve(cameras.resized(c0, c0), _resize(masks[:, None], c0)[:, 0], centre, radius, s.hull_samples,
                 s.mask_level)
    # the hull at the output resolution, completed where the coarse hull missed pixels
    hull_w = _resize(hull.valid[:, None].float(), size)
    t_hull = push_pull(_upsample_valid(hull.t_in, hull.valid, size)[:, None], (hull_w > 0.99).float())[:, 0]
    if size != c0:
        t_hull = refine_entry(cameras, masks, t_hull, fg_out, 2.0 * radius / s.hull_samples, s.mask_level)
    if V < 2:  # one view: nothing to match, the hull (the mask's cone) is all there is
        t1 = t_hull if guide is None else torch.where(guide[1], guide[0].to(t_hull), t_hull)
        conf = torch.where(fg_out, 0.05, 0.0)
        pos = torch.where(fg_out[..., None], o + t1[..., None] * d, torch.zeros_like(o))
        zero = torch.zeros_like(t_hull)
        return pos, conf, {"t": t1, "t_hull": t_hull, "t_mvs": t_hull, "agree": zero, "score": zero,
                           "sharp": zero, "verified": zero.bool(), "support": zero}

    # first sweep: the whole hull interval
    note(f"sweep {c0}")
    near = hull.t_in - s.search_front * radius
    far = torch.maximum(torch.minimum(hull.t_out, hull.t_in + s.search_depth * radius), near + 1e-3 * radius)
    frac = torch.linspace(0.0, 1.0, passes[0].hypotheses, device=dev)
    est = _sweep(passes[0], gray, cameras, near[:, None] + (far - near)[:, None] * frac[None, :, None, None],
                 hull.valid, s.top_k)
    sharp = (est.margin / s.margin_ref).clamp(max=1.0)  # sharpness means most over the full range
    step0 = (far - near) / (passes[0].hypotheses - 1)
    t, fg, step = est.t, hull.valid, step0
    hull_c0 = push_pull(hull.t_in[:, None], hull.valid.float()[:, None])[:, 0]
    base, base_c0 = t_hull, hull_c0
    if guide is not None:
        t_guide, g_valid = guide
        base = torch.where(g_valid, t_guide.to(t_hull), t_hull)
        g_c0 = _resize(g_valid[:, None].float(), c0)[:, 0] > 0.99
        base_c0 = torch.where(g_c0, _upsample_valid(t_guide.to(t_hull), g_valid, c0), hull_c0)
    for cycle in range(s.cycles):
        last = cycle == s.cycles - 1
        if cycle == 0:
            cycle_passes = [passes[1]]
        else:  # start again from the filled estimate, which is better than the hull
            t, fg, step = _upsample_valid(t, fg, c0), fg_c0, step0
            cycle_passes = [Pass(c0, 2 * s.refine_hypotheses - 1, 2 * s.refine_span, passes[1].window,
                                 passes[1].aggregate)]
        if last or s.fine_every_cycle:
            cycle_passes += passes[2:]
        for p in cycle_passes:
            note(f"sweep {p.size}")
            if p.size != t.shape[-1]:
                t, step = (_upsample_valid(x, fg, p.size) for x in (t, step))
                fg = _resize(masks[:, None], p.size)[:, 0] > 0.5
            offsets = torch.linspace(-p.span, p.span, p.hypotheses, device=dev)
            est = _sweep(p, gray, cameras, t[:, None] + step[:, None] * offsets[None, :, None, None], fg,
                         s.top_k)
            t = est.t
            step = step * (2 * p.span / (p.hypotheses - 1))
        score = est.score
        r = size if last else t.shape[-1]
        if t.shape[-1] != r:
            t, score = (_upsample_valid(x, fg, r) for x in (t, score))
        fg = fg_out if r == size else _resize(masks[:, None], r)[:, 0] > 0.5
        note("consistency")
        t_mvs = t
        t, verified, quality, agree = _verify_and_fill(cameras.resized(r, r), t, score, fg,
                                                       base if r == size else base_c0, s)

    # confidence: verified depths 0.6-1 by match quality and sharpness; filled ones 0.05-0.45 by the share
    # of verified pixels around them (about 2 cm across), which is what the fill leans on
    good = verified.float()[:, None]
    sharp = _upsample_valid(sharp, hull.valid, size)
    k = max(3, size // 16) | 1
    support = (box_filter(good, k) / box_filter(fg_out.float()[:, None], k).clamp(min=1e-6))[:, 0]
    conf = torch.where(verified, 0.6 + 0.4 * quality * sharp, 0.05 + 0.4 * support.clamp(0.0, 1.0))
    conf = torch.where(fg_out, conf, torch.zeros_like(conf))
    pos = torch.where(fg_out[..., None], o + t[..., None] * d, torch.zeros_like(o))
    info = {"t": t, "t_hull": t_hull, "t_mvs": t_mvs, "agree": agree, "score": score, "sharp": sharp,
            "verified": verified, "support": support}
    return pos, conf, info
