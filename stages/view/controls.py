"""What the viewer's face panel offers: the expression channels grouped by face region, the slider ranges, and
named presets. ARKit-52 gets real names and presets; any other expression space (an Ava256 latent, FLAME) gets
numbered channels in one group, since its dimensions mean nothing a person could name."""

from __future__ import annotations

from dataclasses import dataclass, field

from stages.expressions import ARKIT52, arkit_code

# Face regions in the order the panel shows them; a channel belongs to the first region whose prefix it has.
ARKIT_GROUPS: tuple[tuple[str, str], ...] = (
    ("brows", "brow"), ("eyes", "eye"), ("jaw", "jaw"), ("mouth", "mouth"), ("cheeks", "cheek"),
    ("nose", "nose"), ("tongue", "tongue"),
)


def _both(name: str, value: float) -> dict[str, float]:
    """A symmetric pair of ARKit weights (nameLeft and nameRight)."""
    return {f"{name}Left": value, f"{name}Right": value}


ARKIT_PRESETS: dict[str, dict[str, float]] = {
    "neutral": {},
    "smile": {**_both("mouthSmile", 0.9), **_both("cheekSquint", 0.4), **_both("eyeSquint", 0.2)},
    "open mouth": {"jawOpen": 0.8, **_both("mouthLowerDown", 0.3), **_both("mouthUpperUp", 0.2)},
    "blink": _both("eyeBlink", 1.0),
    "wink": {"eyeBlinkLeft": 1.0, "mouthSmileLeft": 0.4, "cheekSquintLeft": 0.3},
    "surprise": {"browInnerUp": 0.9, **_both("browOuterUp", 0.8), **_both("eyeWide", 0.7), "jawOpen": 0.45},
    "frown": {**_both("mouthFrown", 0.8), **_both("browDown", 0.6), "mouthShrugLower": 0.4},
    "angry": {**_both("browDown", 0.9), **_both("noseSneer", 0.6), **_both("mouthPress", 0.5),
              **_both("eyeSquint", 0.4)},
    "pucker": {"mouthPucker": 0.9, "mouthFunnel": 0.3},
    "tongue out": {"tongueOut": 1.0, "jawOpen": 0.45},
}


@dataclass(frozen=True)
class FaceControls:
    """Channel names, their groups, slider range and presets (full codes) for one expression space."""

    space: str
    names: tuple[str, ...]
    groups: dict[str, list[str]]
    low: float
    high: float
    presets: dict[str, list[float]] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return len(self.names)

    def to_json(self) -> dict:
        return {"space": self.space, "names": list(self.names), "groups": self.groups, "low": self.low,
                "high": self.high, "presets": self.presets}


def face_controls(space: str, dim: int) -> FaceControls:
    """The panel for an expression space: ARKit-52 by region with presets, else numbered channels."""
    if space == "arkit52" and dim == len(ARKIT52):
        groups: dict[str, list[str]] = {group: [] for group, _ in ARKIT_GROUPS}
        for name in ARKIT52:
            group = next(g for g, prefix in ARKIT_GROUPS if name.startswith(prefix))
            groups[group].append(name)
        presets = {k: [round(float(v), 4) for v in arkit_code(**w)] for k, w in ARKIT_PRESETS.items()}
        return FaceControls(space, ARKIT52, groups, 0.0, 1.0, presets)
    names = tuple(f"c{i}" for i in range(dim))
    return FaceControls(space, names, {"code": list(names)}, -3.0, 3.0, {"neutral": [0.0] * dim})
