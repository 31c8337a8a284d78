"""AKD (MediaPipe landmarks) and CSIM (dlib identity embeddings) on real face photos that ship in pip packages:
scikit-image's astronaut (Eileen Collins), matplotlib's Grace Hopper and scikit-image's LFW subset."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from stages.errors import BadInput
from stages.metrics import akd as akd_mod
from stages.metrics import csim as csim_mod
from stages.metrics.akd import (
    MP68,
    SYNTH_TO_MEDIAPIPE,
    AKDResult,
    akd3d_from_landmarks,
    akd_from_landmarks,
    keypoint_distance,
)

needs_mediapipe = pytest.mark.skipif(akd_mod.akd_unavailable_reason() is not None,
                                     reason=f"AKD extra missing: {akd_mod.INSTALL_HINT}")
needs_dlib = pytest.mark.skipif(csim_mod.csim_unavailable_reason() is not None,
                                reason=f"CSIM extra missing: {csim_mod.INSTALL_HINT}")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return pytest.importorskip("skimage.data").astronaut()


def _shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image moved right by dx and down by dy pixels (edges repeated)."""
    padded = np.pad(img, ((dy, 0), (dx, 0), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded[: img.shape[0], : img.shape[1]])


def _grace_hopper() -> np.ndarray:
    spec = importlib.util.find_spec("matplotlib")
    path = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg" if spec else None
    if path is None or not path.is_file():
        pytest.skip("matplotlib's sample photo is not installed")
    import imageio.v3 as iio

    return iio.imread(path)


# ---------------------------------------------------------------- AKD arithmetic


def test_keypoint_distance_and_missing_faces_are_counted_not_scored():
    gt = np.zeros((478, 2))
    pred = gt + np.array([3.0, 4.0])  # every point 5 px away
    assert keypoint_distance(pred[:3], gt[:3]) == pytest.approx(5.0)
    res = akd_from_landmarks([pred, None, pred], [gt, gt, None])
    assert res.per_image == [pytest.approx(5.0), None, None]
    assert (res.pairs, res.pred_missing, res.gt_missing) == (1, 1, 1)
    assert res.value == pytest.approx(5.0)
    assert math.isnan(AKDResult().value)
    # The 68-point subset only looks at its own vertices: moving another vertex changes nothing.
    other = next(i for i in range(478) if i not in MP68)
    moved = gt.copy()
    moved[other] += (60, 80)  # 100 px away
    assert akd_from_landmarks([moved], [gt]).value == 0.0
    assert akd_from_landmarks([moved], [gt], subset="478").value == pytest.approx(100 / 478)
    assert len(MP68) == 68 and len(set(MP68)) == 68
    with pytest.raises(BadInput, match="subset"):
        akd_from_landmarks([gt], [gt], subset="106")


def test_akd3d_compares_named_keypoints_with_their_mediapipe_vertices():
    names = ("nose_tip", "unknown_point", "chin")
    marks = np.zeros((478, 2))
    marks[SYNTH_TO_MEDIAPIPE["nose_tip"]] = (10, 10)
    marks[SYNTH_TO_MEDIAPIPE["chin"]] = (20, 30)
    uv = np.array([[10, 13], [999, 999], [20, 30]], float)  # nose 3 px off, the unknown point is ignored
    res = akd3d_from_landmarks([marks, marks, None], [uv, uv, uv], names, gt_found=[True, False, True])
    assert res.per_image == [pytest.approx(1.5), None, None]
    assert (res.gt_missing, res.pred_missing) == (1, 1)


# ---------------------------------------------------------------- AKD with MediaPipe


@needs_mediapipe
def test_akd_is_zero_for_the_same_photo_and_follows_a_shift(astronaut):
    with akd_mod.FaceLandmarks() as landmarks:
        ref = landmarks(astronaut)
        assert ref is not None and ref.shape == (478, 2)
        same = landmarks(astronaut.copy())
        shifted = landmarks(_shift(astronaut, 6, 8))  # a 10 px move
        blank = landmarks(np.zeros_like(astronaut))
    assert blank is None
    assert akd_from_landmarks([same], [ref]).value == pytest.approx(0.0, abs=1e-6)
    moved = akd_from_landmarks([shifted], [ref]).value
    assert 8.5 < moved < 11.5
    # The mean displacement itself points along the shift.
    d = (shifted - ref)[list(MP68)].mean(axis=0)
    assert d == pytest.approx([6, 8], abs=1.5)


@needs_mediapipe
def test_synthetic_keypoint_map_matches_the_landmarker_on_a_rendered_head():
    """The landmarker on a frontal render of a synthetic head lands near the head's projected 3D keypoints: the
    landmarker's own AKD-3D error, which checks SYNTH_TO_MEDIAPIPE."""
    import torch

    from stages.cameras import focal_for_extent, look_at, make_cameras, spherical_eye
    from stages.evaluate.run import synthetic_keypoints
    from stages.synth import KEYPOINT_NAMES, render_head, sample_identity

    size = 128
    cams = make_cameras(look_at(spherical_eye(torch.tensor([10.0]), torch.tensor([5.0]), 1.0)),
                        focal_for_extent(0.34, 1.0, size), size)
    idn = sample_identity(2)
    code = np.zeros(52, np.float32)
    out = render_head(idn, code, cams, depth=False)
    img = (out["rgb"][0] * out["alpha"][0, ..., None]).numpy()
    with akd_mod.FaceLandmarks() as landmarks:
        marks = landmarks(img)
    assert marks is not None
    uv, _ = cams.project(synthetic_keypoints(idn, torch.from_numpy(code)[None])[0])
    res = akd3d_from_landmarks([marks], [uv[0].numpy()], KEYPOINT_NAMES)
    assert res.value < 0.025 * size  # about 3 px at 128²; a swapped left/right or wrong vertex is far more


def test_akd_unavailable_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mediapipe" else real(name, *a))
    assert "mediapipe==1.2.3" in akd_mod.akd_unavailable_reason()


# ---------------------------------------------------------------- CSIM


@pytest.fixture(scope="module")
def embedder():
    if csim_mod.csim_unavailable_reason() is not None:
        pytest.skip(f"CSIM extra missing: {csim_mod.INSTALL_HINT}")
    return csim_mod.FaceEmbedder()


@needs_dlib
def test_csim_is_one_for_the_same_photo_and_lower_for_another_person(embedder, astronaut):
    hopper = _grace_hopper()
    noisy = np.clip(astronaut + np.random.default_rng(0).normal(0, 8, astronaut.shape), 0, 255).astype(np.uint8)
    res = csim_mod.csim(embedder, [astronaut, noisy, _shift(astronaut, 4, 3)], [astronaut] * 3)
    same, same_noisy, same_shifted = res.per_image
    assert same == pytest.approx(1.0, abs=1e-9)
    assert same_noisy > 0.95 and same_shifted > 0.95
    other = csim_mod.cosine(embedder.embed(hopper), embedder.embed(astronaut))
    assert other < min(same_noisy, same_shifted) - 0.03
    assert csim_mod.normalised(other) < 0.5 < csim_mod.normalised(same_noisy)


@needs_dlib
def test_csim_uses_the_ground_truth_face_box_and_skips_faceless_ground_truth(embedder, astronaut):
    blank = np.zeros_like(astronaut)
    assert embedder.face_box(blank) is None and embedder.embed(blank) is None
    # A render without a detectable face is still scored inside the ground truth's box (low, not skipped) ...
    res = csim_mod.csim(embedder, [blank, astronaut], [astronaut, blank])
    assert res.per_image[0] is not None and res.per_image[0] < 0.9
    # ... while a ground truth without a face leaves the pair out.
    assert res.per_image[1] is None and res.pairs == 1 and res.gt_missing == 1
    # Small images are upsampled so the detector still finds the face.
    small = astronaut[::4, ::4].copy()  # 128², face about 22 px
    assert embedder.face_box(small) is not None


@needs_dlib
def test_stranger_cosine_holds_for_faces_it_was_not_fitted_on(embedder, astronaut):
    """STRANGER_COSINE was fitted on skimage's LFW faces (5th-95th percentile 0.80-0.91). Two people outside that
    sample (Eileen Collins, Grace Hopper), in colour, grey and mirrored, must normalise near 0 (within ±0.4; a
    constant outside about 0.85-0.93 fails), the same person's variants near 1."""
    hopper = _grace_hopper()

    def variants(img):
        grey = np.repeat(img.mean(-1, keepdims=True), 3, -1).astype(np.uint8)
        return [img, np.ascontiguousarray(grey), np.ascontiguousarray(img[:, ::-1])]

    a, h = [embedder.embed(x) for x in variants(astronaut)], [embedder.embed(x) for x in variants(hopper)]
    strangers = [csim_mod.normalised(csim_mod.cosine(x, y)) for x in a for y in h]
    same = [csim_mod.normalised(csim_mod.cosine(v[0], w)) for v in (a, h) for w in v[1:]]
    assert all(abs(x) < 0.4 for x in strangers), strangers  # measured 0.88-0.90 raw, 0.12-0.30 normalised
    assert min(same) > 0.9, same  # measured 0.99-0.996 raw
    assert csim_mod.normalised(csim_mod.STRANGER_COSINE) == 0.0 and csim_mod.normalised(1.0) == 1.0


def test_csim_unavailable_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert "dlib-bin" in csim_mod.csim_unavailable_reason()
    with pytest.raises(BadInput, match="face-recognition-models"):
        csim_mod.dlib_model_dir()
