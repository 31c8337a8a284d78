"""Training-data recipes: which ways of widening the synthetic pool are on.

The shipped model saw one generator, one camera distance and focal, perfect cameras and masks, studio light and a
black background, and fails on anything else. Each switch below widens one of those axes toward what real users'
captures look like (phones 0.3-0.6 m away, head-pose cameras off by degrees, segmenter masks, rooms behind the
head, phone image processing). A recipe is a comma list of switch names; "wide" names them all, and "-name"
takes one back out ("wide,-photometric"). The empty recipe is the original pool, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from stages.errors import BadInput


@dataclass(frozen=True)
class Recipe:
    """One flag per switch. Ranges live beside the code that uses them (stages.synth.wide, stages.train.augment,
    stages.train.photometric), each with a docstring saying why."""

    cameras: bool = False  # per-subject camera distance and focal (phones and studios), head-square crops
    camera_noise: bool = False  # input cameras off by head-pose-sized errors (targets keep the true ones)
    mask_noise: bool = False  # input masks eroded/dilated, blurred, with blobs (as a segmenter makes)
    backgrounds: bool = False  # colours, gradients and noise textures behind the inputs instead of black
    photometric: bool = False  # exposure/white balance/gamma (shared with the targets), noise, blur, JPEG
    lighting: bool = False  # light direction, intensity, contrast and colour vary per subject
    identity: bool = False  # wider head shapes, skin, hair, beards, age, necks

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def names(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]


SWITCHES = tuple(f.name for f in fields(Recipe))


def parse_recipe(text: str) -> Recipe:
    """'' → nothing on; 'wide' → everything; 'cameras,mask_noise' → those; 'wide,-photometric' → all but one.
    Also accepts 'default' or 'off' for the original pool."""
    on: set[str] = set()
    for raw in (text or "").split(","):
        item = raw.strip()
        if item in ("", "default", "off", "none"):
            continue
        neg = item.startswith("-")
        name = item[1:] if neg else item
        names = set(SWITCHES) if name == "wide" else {name}
        if not names <= set(SWITCHES):
            raise BadInput(f"--recipe: unknown switch '{name}' (expected wide or some of {', '.join(SWITCHES)})")
        on = on - names if neg else on | names
    return Recipe(**{n: n in on for n in SWITCHES})
