"""How foggy an avatar is: what the network made of each input view's pixels, read without a GPU or a target.

Real people come out blurred because the network answers geometry it cannot trust with many faint, wide
Gaussians (benchmarks/RESULTS.md, "fog where the prior has no geometry" and "The inputs' own codes, trained").
Per input view of each avatar this prints
- the median opacity of the view's Gaussians (faint: near 0),
- the median of each Gaussian's largest scale in units of its pixel's footprint (wide: well above 1),
- the avatar rendered at that view's own camera, with all its Gaussians, against the input photo inside its
  mask ("self-view PSNR"; at the view's recorded expression when the capture records one, else neutral),
- at that camera, the median depth spread inside the mask: the weighted standard deviation of the distances
  of the Gaussians each pixel blends (`stages.train.depth_spread`, what `train --depth-spread-weight` penalises),
and means per avatar and over all. A training change that reduces the fog should raise the first and the third
and lower the second on real captures, before any test set is scored.

    python benchmarks/fog.py --work WORK [--checkpoint C]   # WORK: a score.py --work folder (case_*/avatar...)
    python benchmarks/fog.py --avatar A.safetensors --capture CAPTURE [--checkpoint C]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stages.avatar import AvatarDriver, open_avatar  # noqa: E402
from stages.cameras.transforms import read_transforms  # noqa: E402
from stages.gaussians import Gaussians  # noqa: E402
from stages.render import render  # noqa: E402
from stages.train.depth_spread import depth_spread  # noqa: E402


@dataclass
class ViewFog:
    avatar: str
    view: int
    opacity: float  # median opacity of the view's Gaussians
    width: float  # median largest scale / pixel footprint
    self_psnr: float  # dB, inside the view's mask, the whole avatar rendered at the view's camera
    spread_mm: float  # median depth spread inside the mask at the view's camera


def recorded_codes(capture: Path | None, views: int, dim: int) -> list[np.ndarray]:
    """Each input's recorded expression (transforms.json's per-frame `expression`) where it has the model's
    dimension, else neutral: the photo shows its own expression, and a neutral avatar would not match it."""
    neutral = np.zeros(dim, np.float32)
    if capture is None or not (capture / "transforms.json").is_file():
        return [neutral] * views
    frames = read_transforms(capture / "transforms.json").frames
    codes = [np.asarray(f.extra.get("expression", []), np.float32) for f in frames[:views]]
    return [c if c.shape == (dim,) else neutral for c in codes] + [neutral] * (views - len(codes))


def view_fog(driver: AvatarDriver, codes: list[np.ndarray], name: str) -> list[ViewFog]:
    keep = driver.state.keep[0].cpu()
    views = keep.shape[0]
    view_of = torch.repeat_interleave(torch.arange(views), keep.reshape(views, -1).sum(1))
    white = torch.ones(3)
    out = []
    for v in range(views):
        g = driver.gaussians(codes[v])
        g = Gaussians(*(t.float().cpu() for t in (g.means, g.quats, g.log_scales, g.opacity_logits, g.colors)))
        mine = view_of == v
        footprint = driver.state.footprint[0, v].cpu()[keep[v]]
        width = torch.exp(g.log_scales[mine]).max(-1).values / footprint
        opacity = torch.sigmoid(g.opacity_logits[mine])
        rgb = render(g, driver.avatar.cameras[v], background=white, depth=False).rgb[0].clamp(0, 1)
        mask = driver.avatar.masks[v].cpu()
        photo = driver.avatar.images[v].cpu() * mask[..., None] + (1 - mask[..., None])
        inside = mask > 0.5
        mse = float(((rgb - photo) ** 2)[inside].mean()) if inside.any() else float("nan")
        spread, _ = depth_spread(g, driver.avatar.cameras[v])
        out.append(ViewFog(name, v, float(opacity.median()) if len(opacity) else float("nan"),
                           float(width.median()) if len(width) else float("nan"),
                           float(-10 * np.log10(max(mse, 1e-10))),
                           float(spread[inside].median()) * 1000 if inside.any() else float("nan")))
    return out


def table(rows: list[ViewFog]) -> str:
    lines = ["| avatar | view | opacity (median) | width, footprints (median) | self-view PSNR dB | depth spread mm "
             "(median) |", "|---|---|---|---|---|---|"]

    def cells(rs: list[ViewFog]) -> str:
        return (f"{np.mean([r.opacity for r in rs]):.3f} | {np.mean([r.width for r in rs]):.2f} | "
                f"{np.mean([r.self_psnr for r in rs]):.2f} | {np.mean([r.spread_mm for r in rs]):.1f} |")

    lines += [f"| {r.avatar} | {r.view} | {cells([r])}" for r in rows]
    for name in dict.fromkeys(r.avatar for r in rows):
        lines.append(f"| **{name}** | mean | {cells([r for r in rows if r.avatar == name])}")
    lines.append(f"| **all** | mean | {cells(rows)}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, help="a score.py --work folder: every case_*/avatar.safetensors in it")
    ap.add_argument("--avatar", type=Path, help="one avatar file (with --capture for its recorded codes)")
    ap.add_argument("--capture", type=Path, default=None)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the one the avatar records")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if (args.work is None) == (args.avatar is None):
        raise SystemExit("give --work or --avatar")
    if args.work is not None:
        jobs = [(p / "avatar.safetensors", p / "capture") for p in sorted(args.work.glob("case_*"))
                if (p / "avatar.safetensors").is_file()]
        if not jobs:
            raise SystemExit(f"{args.work}: no case_*/avatar.safetensors in it")
    else:
        jobs = [(args.avatar, args.capture)]
    rows: list[ViewFog] = []
    with torch.no_grad():
        for avatar, capture in jobs:
            driver = open_avatar(avatar, args.checkpoint, "cpu")
            name = avatar.parent.name if args.work is not None else avatar.stem
            codes = recorded_codes(capture, driver.avatar.images.shape[0], driver.expression_dim)
            rows += view_fog(driver, codes, name)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
