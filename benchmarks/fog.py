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
from stages.capture import read_capture  # noqa: E402
from stages.capture.input_codes import recorded_codes  # noqa: E402
from stages.evaluate.scoring import masked_psnr  # noqa: E402
from stages.model.config import ModelConfig  # noqa: E402
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


def input_expressions(capture: Path | None, cfg: ModelConfig, views: int) -> list[np.ndarray]:
    """Each input's recorded expression (`stages.capture.input_codes.recorded_codes`: the capture's per-frame
    codes in the network's expression space), else neutral: the photo shows its own expression, and a neutral
    avatar would not match it."""
    codes = None
    if capture is not None and (capture / "transforms.json").is_file():
        codes = recorded_codes(read_capture(capture), cfg)
    if codes is None:
        return [np.zeros(cfg.expr_dim, np.float32)] * views
    return list(codes.numpy()[:views])


def view_fog(driver: AvatarDriver, codes: list[np.ndarray], name: str) -> list[ViewFog]:
    keep = driver.state.keep[0].cpu()
    views = keep.shape[0]
    view_of = torch.repeat_interleave(torch.arange(views), keep.reshape(views, -1).sum(1))
    white = torch.ones(3)
    out = []
    for v in range(views):
        g = driver.gaussians(codes[v]).to("cpu", torch.float32)
        mine = view_of == v
        footprint = driver.state.footprint[0, v].cpu()[keep[v]]
        width = g.scales()[mine].max(-1).values / footprint
        opacity = g.opacities()[mine]
        rgb = render(g, driver.avatar.cameras[v], background=white, depth=False).rgb[0].clamp(0, 1)
        mask = driver.avatar.masks[v].cpu()
        photo = driver.avatar.images[v].cpu() * mask[..., None] + (1 - mask[..., None])
        inside = mask > 0.5
        self_psnr = masked_psnr(rgb.permute(2, 0, 1)[None], photo.permute(2, 0, 1)[None], mask[None])
        spread, _ = depth_spread(g, driver.avatar.cameras[v])
        out.append(ViewFog(name, v, float(opacity.median()) if len(opacity) else float("nan"),
                           float(width.median()) if len(width) else float("nan"),
                           self_psnr,
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
            codes = input_expressions(capture, driver.model.cfg, driver.avatar.images.shape[0])
            rows += view_fog(driver, codes, name)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
