"""Random and scripted ARKit-52 expressions for the synthetic heads.

`sample_expression` draws a plausible, sparse mix: a few facial actions, each either symmetric (both sides) or
one-sided, so that training sees every channel often and learns left from right. `performance` and friends are
hand-keyed sequences for demos and examples.
"""

from __future__ import annotations

import numpy as np
import torch

from stages.expressions import ARKIT52, ARKIT_INDEX

PAIRS = ["eyeBlink", "eyeWide", "eyeSquint", "browDown", "browOuterUp", "mouthSmile", "mouthFrown",
         "mouthDimple", "mouthStretch", "mouthPress", "mouthLowerDown", "mouthUpperUp", "cheekSquint",
         "noseSneer"]
SINGLES = ["jawOpen", "jawLeft", "jawRight", "jawForward", "mouthClose", "mouthFunnel", "mouthPucker",
           "mouthLeft", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
           "browInnerUp", "cheekPuff", "tongueOut"]
GAZES = {"up": {"eyeLookUpLeft": 1.0, "eyeLookUpRight": 1.0},
         "down": {"eyeLookDownLeft": 1.0, "eyeLookDownRight": 1.0},
         "left": {"eyeLookOutLeft": 1.0, "eyeLookInRight": 1.0},  # toward the subject's left (+x)
         "right": {"eyeLookInLeft": 1.0, "eyeLookOutRight": 1.0}}
# actions that only make sense together with an open jaw
NEEDS_JAW = {"mouthClose": 0.5, "tongueOut": 0.45}


def _numpy_rng(generator: torch.Generator | np.random.Generator | int) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    return np.random.default_rng(int(generator))


def sample_expression(generator: torch.Generator | np.random.Generator | int, neutral_prob: float = 0.1) -> np.ndarray:
    """A (52,) float32 ARKit code in [0, 1]: neutral with probability `neutral_prob`, otherwise 1–4 actions
    drawn from every channel group (eye, brow, jaw, mouth, cheek, nose, gaze), symmetric or one-sided."""
    rng = _numpy_rng(generator)
    code = np.zeros(52, np.float32)
    if rng.random() < neutral_prob:
        return code
    n_actions = int(rng.choice([1, 2, 3, 4], p=[0.25, 0.35, 0.27, 0.13]))
    groups = [("pair", p) for p in PAIRS] + [("single", s) for s in SINGLES] + [("gaze", g) for g in GAZES]
    picks = rng.choice(len(groups), size=n_actions, replace=False)

    def put(name: str, value: float) -> None:
        i = ARKIT_INDEX[name]
        code[i] = max(code[i], float(np.clip(value, 0.0, 1.0)))

    for k in picks:
        kind, name = groups[int(k)]
        w = 0.2 + 0.8 * rng.random() ** 0.6
        if kind == "pair":
            r = rng.random()
            if r < 0.55:  # symmetric, with a little natural imbalance
                put(f"{name}Left", w * (1 + rng.normal(0, 0.06)))
                put(f"{name}Right", w * (1 + rng.normal(0, 0.06)))
            elif r < 0.8:
                put(f"{name}{'Left' if rng.random() < 0.5 else 'Right'}", w)
            else:
                put(f"{name}Left", w * rng.random())
                put(f"{name}Right", w * rng.random())
        elif kind == "single":
            put(name, w)
            if name in NEEDS_JAW:
                put("jawOpen", NEEDS_JAW[name] + 0.4 * rng.random())
        else:
            for ch, v in GAZES[name].items():
                put(ch, w * v)
    # contradictory pairs: keep the stronger of blink/wide and of smile/frown on each side
    for side in ("Left", "Right"):
        for a, b in (("eyeBlink", "eyeWide"), ("mouthSmile", "mouthFrown")):
            ia, ib = ARKIT_INDEX[a + side], ARKIT_INDEX[b + side]
            if code[ia] > 0 and code[ib] > 0:
                code[ib if code[ia] >= code[ib] else ia] = 0.0
    return code


# ----- scripted sequences ------------------------------------------------------------------------------------
def _ease(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0, 1)
    return t * t * (3 - 2 * t)


def _pulse(n: int, fps: float, start: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """An envelope over n frames: 0 → 1 over `rise` s from `start`, held, back to 0 over `fall` s."""
    t = np.arange(n) / fps
    up = _ease((t - start) / max(rise, 1e-6))
    down = 1 - _ease((t - start - rise - hold) / max(fall, 1e-6))
    return np.minimum(up, down)


def keyed(n: int, fps: float, keys: list[tuple[dict[str, float], float, float, float, float]]) -> np.ndarray:
    """(n, 52) codes from keyed actions: (weights, start, rise, hold, fall) in seconds; overlaps add (clipped)."""
    codes = np.zeros((n, 52), np.float32)
    for weights, start, rise, hold, fall in keys:
        env = _pulse(n, fps, start, rise, hold, fall)
        for name, v in weights.items():
            codes[:, ARKIT_INDEX[name]] += v * env
    return np.clip(codes, 0, 1)


def blink_track(n: int, fps: float, times: list[float], dur: float = 0.2) -> list[tuple]:
    return [({"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}, t, dur * 0.4, 0.02, dur * 0.6) for t in times]


def performance(fps: float = 25.0, seconds: float = 5.0) -> np.ndarray:
    """~5 s: a smile, the jaw opening, a blink, raised then lowered brows, a pucker, with blinks between."""
    n = int(round(fps * seconds))
    keys = [
        ({"mouthSmileLeft": 0.9, "mouthSmileRight": 0.9, "cheekSquintLeft": 0.4, "cheekSquintRight": 0.4},
         0.2, 0.35, 0.45, 0.3),
        ({"jawOpen": 0.85, "mouthLowerDownLeft": 0.3, "mouthLowerDownRight": 0.3}, 1.3, 0.3, 0.4, 0.3),
        ({"browInnerUp": 0.9, "browOuterUpLeft": 0.8, "browOuterUpRight": 0.8, "eyeWideLeft": 0.5,
          "eyeWideRight": 0.5}, 2.5, 0.25, 0.35, 0.25),
        ({"browDownLeft": 0.9, "browDownRight": 0.9, "eyeSquintLeft": 0.3, "eyeSquintRight": 0.3}, 3.35, 0.2,
         0.3, 0.2),
        ({"mouthPucker": 0.95, "mouthFunnel": 0.2}, 4.0, 0.3, 0.4, 0.25),
        ({"eyeLookOutLeft": 0.6, "eyeLookInRight": 0.6}, 3.9, 0.2, 0.5, 0.2),
    ] + blink_track(n, fps, [1.05, 2.2, 4.75])
    return keyed(n, fps, keys)


def short_sequences(fps: float = 25.0) -> dict[str, np.ndarray]:
    """A few short clips: a smile, talking, blinks, brows, gaze, one-sided actions."""
    n2 = int(2 * fps)
    talk_t = np.arange(int(3 * fps)) / fps
    talk = np.zeros((len(talk_t), 52), np.float32)
    talk[:, ARKIT_INDEX["jawOpen"]] = 0.35 * (0.5 - 0.5 * np.cos(2 * np.pi * 2.6 * talk_t)) * (
        0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * talk_t) ** 2)
    talk[:, ARKIT_INDEX["mouthFunnel"]] = 0.3 * np.clip(np.sin(2 * np.pi * 1.3 * talk_t), 0, 1)
    talk[:, ARKIT_INDEX["mouthStretchLeft"]] = talk[:, ARKIT_INDEX["mouthStretchRight"]] = 0.25 * np.clip(
        -np.sin(2 * np.pi * 1.3 * talk_t), 0, 1)
    return {
        "smile": keyed(n2, fps, [({"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}, 0.2, 0.5, 0.6, 0.5)]),
        "talk": np.clip(talk, 0, 1),
        "blink": keyed(n2, fps, blink_track(n2, fps, [0.3, 1.2])),
        "brows": keyed(n2, fps, [({"browInnerUp": 1.0}, 0.1, 0.3, 0.2, 0.3),
                                 ({"browDownLeft": 1.0, "browDownRight": 1.0}, 1.0, 0.3, 0.2, 0.3)]),
        "gaze": keyed(n2, fps, [({"eyeLookOutLeft": 1.0, "eyeLookInRight": 1.0}, 0.0, 0.3, 0.2, 0.3),
                                ({"eyeLookInLeft": 1.0, "eyeLookOutRight": 1.0}, 0.8, 0.3, 0.2, 0.3),
                                ({"eyeLookUpLeft": 1.0, "eyeLookUpRight": 1.0}, 1.4, 0.2, 0.1, 0.2)]),
        "wink_left": keyed(n2, fps, [({"eyeBlinkLeft": 1.0, "mouthSmileLeft": 0.6, "cheekSquintLeft": 0.5},
                                      0.3, 0.3, 0.5, 0.3)]),
    }


def channel_names() -> tuple[str, ...]:
    return ARKIT52
