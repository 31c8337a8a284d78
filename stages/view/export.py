"""`avat3r view AVATAR --export DIR`: one expression's Gaussians as a page that works offline from disk.

The page is a single `index.html`: the client-side renderer (gsplat.js, bundled by `make web` into
static/splat_bundle.js) is inlined as a module script and the Gaussians are inlined as base64 `.splat`
records, because browsers refuse file:// fetches and module imports. The records are rotated 180° about x
into the y-down, camera-looks-along-+z world that .splat viewers assume, so the head stands upright and
faces the viewer's default camera."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import torch

from stages.gaussians import Gaussians
from stages.gaussians.io import splat_records
from stages.io import atomic_dir

STATIC = Path(__file__).parent / "static"


def to_viewer_frame(g: Gaussians) -> Gaussians:
    """Rotate 180° about x: (x, y, z) → (x, −y, −z); quaternions q → (0,1,0,0)·q, i.e. (w,x,y,z) → (−x, w, −z, y)."""
    g = g.detach().to("cpu", torch.float32)
    means = g.means * torch.tensor([1.0, -1.0, -1.0])
    w, x, y, z = g.quats.unbind(-1)
    quats = torch.stack([-x, w, -z, y], -1)
    return Gaussians(means, quats, g.log_scales, g.opacity_logits, g.colors, None)


def page_html(g: Gaussians, radius: float, focal_fraction: float, title: str = "avat3r avatar",
              background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> str:
    """The self-contained page (text) for Gaussians in the toolkit's world frame."""
    records = splat_records(to_viewer_frame(g))
    data = base64.b64encode(records.tobytes()).decode("ascii")
    config = json.dumps({"radius": radius, "focal": focal_fraction, "background": list(background),
                         "count": len(records)})
    bundle = (STATIC / "splat_bundle.js").read_text(encoding="utf-8").replace("</script", "<\\/script")
    template = (STATIC / "export.html").read_text(encoding="utf-8")
    # The bundle goes in last so that no placeholder text inside it is ever replaced.
    out = template.replace("{{TITLE}}", html.escape(title)).replace("{{CONFIG}}", config)
    out = out.replace("{{SPLAT_B64}}", data)
    head, tail = out.split("{{BUNDLE}}")
    return head + bundle + tail


def export_page(out_dir: str | Path, g: Gaussians, radius: float, focal_fraction: float,
                title: str = "avat3r avatar", background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Path:
    """Write `out_dir/index.html` (atomically: the folder appears complete or not at all)."""
    text = page_html(g, radius, focal_fraction, title, background)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / "index.html").write_text(text, encoding="utf-8")
    return out_dir / "index.html"
