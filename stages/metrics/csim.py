"""CSIM: identity similarity between a render and the ground truth, as the cosine of face-recognition
embeddings (dlib's ResNet, 128-d), so a method that keeps the person recognisable scores high.

Files: `dlib-bin` (the compiled library, a wheel) and `face-recognition-models` (the weights, a 100 MB sdist whose
`__init__` needs pkg_resources, so we locate its files with `find_spec` and never import it). Both are the
optional `eval` extra; without them CSIM is reported as unavailable with `INSTALL_HINT`.

Protocol per image pair: the face box comes from the ground truth (the render is seen by the same camera, so a
poor render cannot dodge the metric by not being detected); dlib's 68-point shape model aligns each image
separately inside that box and the ResNet embeds the aligned 150x150 chip. Images smaller than `MIN_SIDE` are
upsampled first (cubic), since dlib's detector misses faces under ~80 pixels. Pairs whose ground truth has no
detectable face are left out and counted.

Normalisation: dlib's embeddings are not zero-centred (two strangers score about 0.86), so raw cosine compresses
everything into [0.8, 1]. We report the raw cosine (`csim`) and `csim_norm = (cos - c0) / (1 - c0)` with
c0 = `STRANGER_COSINE`, the mean cosine between different people measured on scikit-image's LFW subset
(`skimage.data.lfw_subset()`, its 100 face images, 25x25 grey upsampled to 200x200, 4950 pairs: mean 0.862,
5th-95th percentile 0.80-0.91; `tests/test_metrics_face.py` checks it on two people outside that sample).
0 means "as alike as two strangers", 1 identical. The paper's CSIM (0.59 on Ava256) uses a different network, so
neither number is directly comparable to it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stages.errors import BadInput

INSTALL_HINT = ("pip install 'avat3r[eval]' (dlib-bin==20.0.1.post1 face-recognition-models==0.3.0; "
                "or `make setup`)")
STRANGER_COSINE = 0.862
MIN_SIDE = 256  # upsample smaller images before detection
_FILES = {"shape": "shape_predictor_68_face_landmarks.dat", "resnet": "dlib_face_recognition_resnet_model_v1.dat"}


def dlib_model_dir() -> Path:
    """The `models/` folder of the installed face-recognition-models package; BadInput when it is missing."""
    spec = importlib.util.find_spec("face_recognition_models")  # locates it without running its __init__
    for root in list(spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(root) / "models"
        if all((folder / f).is_file() for f in _FILES.values()):
            return folder
    raise BadInput(f"CSIM needs dlib's face-recognition weights (face-recognition-models): {INSTALL_HINT}")


def csim_unavailable_reason() -> str | None:
    """None when dlib and its weights are installed, else why not and how to install them."""
    if importlib.util.find_spec("dlib") is None:
        return f"CSIM needs dlib (dlib-bin): {INSTALL_HINT}"
    try:
        dlib_model_dir()
    except BadInput as exc:
        return str(exc)
    return None


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def normalised(cos: float, c0: float = STRANGER_COSINE) -> float:
    """Map a raw cosine so that strangers score 0 and identical faces 1 (see the module docstring)."""
    return (cos - c0) / (1.0 - c0)


def _prepare(image: np.ndarray) -> np.ndarray:
    """uint8 RGB, upsampled so its shorter side is at least MIN_SIDE (a prepared image passes unchanged)."""
    import cv2

    from stages.track.landmarker import as_rgb_uint8

    img = as_rgb_uint8(image)
    scale = max(1.0, MIN_SIDE / min(img.shape[:2]))
    if scale > 1.0:
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                         interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(img)


class FaceEmbedder:
    """dlib's frontal face detector, 68-point aligner and ResNet embedder, loaded once."""

    def __init__(self, model_dir: Path | None = None):
        try:
            import dlib
        except ImportError as exc:
            raise BadInput(f"CSIM needs dlib (dlib-bin): {INSTALL_HINT}") from exc
        folder = Path(model_dir) if model_dir is not None else dlib_model_dir()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(folder / _FILES["shape"]))
        self._resnet = dlib.face_recognition_model_v1(str(folder / _FILES["resnet"]))

    def face_box(self, image: np.ndarray) -> Any | None:
        """The most confident face rectangle (in the coordinates of the upsampled image), or None."""
        img = _prepare(image)
        boxes, scores, _ = self._detector.run(img, 1)
        if len(boxes) == 0:
            return None
        return boxes[int(np.argmax(scores))]

    def embed(self, image: np.ndarray, box: Any | None = None) -> np.ndarray | None:
        """The 128-d identity embedding of the face in `image` (inside `box` when given), or None."""
        img = _prepare(image)
        if box is None:
            box = self.face_box(img)
            if box is None:
                return None
        shape = self._shape(img, box)
        return np.asarray(self._resnet.compute_face_descriptor(img, shape), np.float64)


@dataclass
class CSIMResult:
    """Raw cosines per image pair (None where the ground truth shows no detectable face)."""

    per_image: list[float | None] = field(default_factory=list)
    c0: float = STRANGER_COSINE

    @property
    def pairs(self) -> int:
        return sum(v is not None for v in self.per_image)

    @property
    def gt_missing(self) -> int:
        return sum(v is None for v in self.per_image)

    @property
    def value(self) -> float:
        vals = [v for v in self.per_image if v is not None]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def value_norm(self) -> float:
        return normalised(self.value, self.c0)

    def merged(self, other: CSIMResult) -> CSIMResult:
        return CSIMResult(self.per_image + other.per_image, self.c0)

    def as_dict(self) -> dict:
        return {"value": self.value, "normalised": self.value_norm, "stranger_cosine": self.c0,
                "pairs": self.pairs, "gt_missing": self.gt_missing}


def csim(embedder: FaceEmbedder, pred: Sequence[np.ndarray], gt: Sequence[np.ndarray],
         gt_embeddings: Sequence[tuple[Any, np.ndarray] | None] | None = None) -> CSIMResult:
    """CSIM over image pairs (H, W, 3). `gt_embeddings` may hold precomputed `gt_face` results (the same ground
    truth is scored against several methods)."""
    if len(pred) != len(gt):
        raise ValueError(f"csim needs as many predictions as ground truths, got {len(pred)} and {len(gt)}")
    gts = gt_embeddings if gt_embeddings is not None else [gt_face(embedder, g) for g in gt]
    out = CSIMResult()
    for p, g in zip(pred, gts, strict=True):
        if g is None:
            out.per_image.append(None)
            continue
        box, emb = g
        out.per_image.append(cosine(embedder.embed(p, box), emb))
    return out


def gt_face(embedder: FaceEmbedder, image: np.ndarray) -> tuple[Any, np.ndarray] | None:
    """(face box, embedding) of a ground-truth image, or None when it shows no detectable face."""
    image = _prepare(image)  # once, not again in face_box and embed
    box = embedder.face_box(image)
    if box is None:
        return None
    emb = embedder.embed(image, box)
    return None if emb is None else (box, emb)
