"""Cut real-face dev cases out of monocular clips, in the layout of `../shared/real/cases`, so that its scorer
(`../shared/real/score.py --cases OUT`) can choose between checkpoints on clips that no test set holds.

The test cases must only ever measure; choosing a checkpoint on them would tune the model to them. This makes
more cases of their monocular kind from other clips (the video dataset's `val` split, which training never
draws), following the recipe their `meta.json` records:

- every frame through the MediaPipe face landmarker (VIDEO mode); a frame is usable when a face is found and its
  face is at least half as sharp as the clip's median (Laplacian variance, `face_source.sharpness`);
- inputs: the most frontal usable frame of the first 60% of the clip, then 3 more by farthest-point sampling on
  (yaw, pitch); targets: 8 usable frames evenly spread over the last 40%;
- cameras from the head pose: c2w = inverse of the facial transformation matrix (translation in metres), a 63°
  vertical field of view, principal point at the centre; the world is MediaPipe's canonical face frame;
- person masks: the selfie segmenter > 0.5, or the face hull, keeping the parts that touch the face;
- targets cropped square around the centroid of the 468 face landmarks, 2.0x their larger extent, padded white,
  resized to 256, with their person mask and face hull; codes are the landmarker's ARKit blendshapes;
- the nearest-input baseline: the input nearest in head rotation, cropped around its own face, its own mask as
  alpha (and its face hull, for the mean-colour baseline).

The output holds frames of real people: keep it out of the repository (research-only footage).

    PYTHONPATH=. .venv/bin/python benchmarks/make_dev_cases.py --clips ../shared/real/clips \
        --cache CACHE --split val --out /tmp/dev_cases
    .venv/bin/python ../shared/real/score.py --cases /tmp/dev_cases --work /tmp/dev_work --avat3r ".venv/bin/avat3r"
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from stages.capture.face_source import farthest_on_pose, sharpness, yaw_pitch
from stages.capture.segment import person_masker
from stages.evaluate.protocol import face_hull
from stages.io import write_image
from stages.track.frames import open_frames
from stages.track.landmarker import detect, open_landmarker
from stages.track.pose import rotation_part

VFOV_DEG = 63.0
CROP = 256
N_INPUTS, N_TARGETS = 4, 8
SOURCE_PART = 0.6
SHARPNESS_FLOOR = 0.5


def pose_camera(transform: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world (4, 4) in the canonical face frame (metres) from a facial transformation matrix
    (canonical face model in cm -> camera space)."""
    m = np.eye(4)
    m[:3, :3] = rotation_part(transform)
    m[:3, 3] = np.asarray(transform, np.float64)[:3, 3] / 100.0
    return np.linalg.inv(m)


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))


def crop_box(landmarks: np.ndarray) -> tuple[int, int, int]:
    """(x0, y0, side) of the square crop around the face landmarks (may reach outside the frame)."""
    pts = landmarks[:468, :2]
    centre = pts.mean(0)
    side = int(round(2.0 * float((pts.max(0) - pts.min(0)).max())))
    x0, y0 = (int(round(c - side / 2.0)) for c in centre)
    return x0, y0, side


def crop_intrinsics(fl: float, width: int, height: int, box: tuple[int, int, int]) -> dict[str, float]:
    """Intrinsics of the CROP² crop `box` of a frame whose camera has focal `fl` and a centred principal point."""
    x0, y0, side = box
    s = CROP / side
    return {"fl_x": fl * s, "fl_y": fl * s, "cx": (width / 2.0 - x0) * s, "cy": (height / 2.0 - y0) * s,
            "w": CROP, "h": CROP}


def crop(image: np.ndarray, box: tuple[int, int, int], fill: float) -> np.ndarray:
    """The square `box` of `image` (H, W[, C]), padded with `fill` outside the frame, resized to CROP²."""
    x0, y0, side = box
    h, w = image.shape[:2]
    out = np.full((side, side, *image.shape[2:]), fill, image.dtype)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if xb > xa and yb > ya:
        out[ya - y0:yb - y0, xa - x0:xb - x0] = image[ya:yb, xa:xb]
    return cv2.resize(out, (CROP, CROP), interpolation=cv2.INTER_AREA)


def face_in_crop(landmarks: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """uint8 0/255 face-hull mask of the CROP² crop `box` (the face_NNN.png files)."""
    return (face_hull((landmarks[:, :2] - box[:2]) * (CROP / box[2]), CROP) * 255).astype(np.uint8)


def person_and_face(mask_fn, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """uint8 0/255 person mask: segmenter > 0.5 or face hull, keeping the components that touch the face."""
    hull = face_hull(landmarks, rgb.shape[:2])
    person = ((mask_fn(rgb) > 0.5) | (hull > 0)).astype(np.uint8)
    n, labels = cv2.connectedComponents(person)
    touching = set(np.unique(labels[hull > 0]).tolist()) - {0}
    return (np.isin(labels, sorted(touching)) * 255).astype(np.uint8) if n > 1 else person * 255


def make_case(video: Path, out: Path, name: str) -> dict:
    """Write one case folder from `video`; returns its meta.json content."""
    frames, faces = [], []
    source = open_frames(video)
    with open_landmarker(video=True) as lm:
        for i, frame in enumerate(source):
            frames.append(frame)
            faces.append(detect(lm, frame, int(round(i * 1000.0 / source.fps))))
    n = len(frames)
    sharp = np.array([sharpness(f, d) if d is not None else 0.0 for f, d in zip(frames, faces, strict=True)])
    found = np.array([d is not None for d in faces])
    if found.sum() < N_INPUTS + N_TARGETS:
        raise ValueError(f"{video}: a face in only {int(found.sum())} of {n} frames")
    usable = found & (sharp >= SHARPNESS_FLOOR * np.median(sharp[found]))
    split = int(SOURCE_PART * n)
    first, last = np.flatnonzero(usable[:split]), split + np.flatnonzero(usable[split:])
    if len(first) < N_INPUTS or len(last) < N_TARGETS:
        raise ValueError(f"{video}: {len(first)} usable frames before the split and {len(last)} after")
    angles = np.array([yaw_pitch(faces[i]) for i in first])
    inputs = [int(first[k]) for k in farthest_on_pose(angles, N_INPUTS)]
    targets = [int(last[k]) for k in np.linspace(0, len(last) - 1, N_TARGETS).round().astype(int)]
    c2w = {i: pose_camera(faces[i].transform) for i in inputs + targets}
    h, w = frames[0].shape[:2]
    fl = (h / 2.0) / math.tan(math.radians(VFOV_DEG / 2.0))
    for sub in ("src/images", "src/masks", "targets", "gt", "baseline"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    src_frames, meta_inputs, masks = [], [], {}
    with person_masker() as mask_fn:
        for i in inputs + targets:
            masks[i] = person_and_face(mask_fn, frames[i], faces[i].landmarks)
    for k, i in enumerate(inputs):
        write_image(out / f"src/images/{k:03d}.png", frames[i])
        write_image(out / f"src/masks/{k:03d}.png", masks[i])
        src_frames.append({"file_path": f"images/{k:03d}.png", "mask_path": f"masks/{k:03d}.png", "fl_x": fl,
                           "fl_y": fl, "cx": w / 2.0, "cy": h / 2.0, "w": w, "h": h,
                           "transform_matrix": c2w[i].tolist()})
        yaw, pitch = yaw_pitch(faces[i])
        meta_inputs.append({"file": f"src/images/{k:03d}.png", "frame": i, "size": [w, h], "yaw": round(yaw, 2),
                            "pitch": round(pitch, 2), "cam_dist_m": round(float(np.linalg.norm(c2w[i][:3, 3])), 4)})
    note = "cameras from MediaPipe head pose (63 deg vertical FOV virtual camera); world = canonical face frame"
    (out / "src/transforms.json").write_text(json.dumps({"camera_model": "OPENCV", "note": note,
                                                         "frames": src_frames}, indent=1))
    tgt_frames, meta_targets, codes = [], [], []
    for j, i in enumerate(targets):
        box = crop_box(faces[i].landmarks)
        write_image(out / f"gt/{j:03d}.png", crop(frames[i], box, 255))
        write_image(out / f"gt/mask_{j:03d}.png", (crop(masks[i], box, 0) > 127).astype(np.uint8) * 255)
        write_image(out / f"gt/face_{j:03d}.png", face_in_crop(faces[i].landmarks, box))
        tgt_frames.append({"file_path": f"gt/{j:03d}.png", **crop_intrinsics(fl, w, h, box),
                           "transform_matrix": c2w[i].tolist()})
        codes.append(faces[i].blendshapes.astype(np.float32))
        to_inputs = [rotation_angle_deg(c2w[i], c2w[k]) for k in inputs]
        near = int(np.argmin(to_inputs))
        ni = inputs[near]
        nbox = crop_box(faces[ni].landmarks)
        rgba = np.concatenate([crop(frames[ni], nbox, 255), crop(masks[ni], nbox, 0)[..., None]], axis=-1)
        write_image(out / f"baseline/nearest_{j:03d}.png", rgba)
        write_image(out / f"baseline/nearest_face_{j:03d}.png", face_in_crop(faces[ni].landmarks, nbox))
        meta_targets.append({"file": f"gt/{j:03d}.png", "frame": i, "size": [w, h], "nearest_input": near,
                             "nearest_angle_deg": round(to_inputs[near], 2),
                             "angles_to_inputs_deg": [round(a, 2) for a in to_inputs],
                             "crop": dict(zip(("x0", "y0", "side"), box, strict=True))})
    (out / "targets/transforms.json").write_text(json.dumps(
        {"camera_model": "OPENCV", "note": "same world as src/transforms.json; intrinsics of the 256x256 crops",
         "frames": tgt_frames}, indent=1))
    np.save(out / "targets/expressions.npy", np.stack(codes))
    meta = {"case": name, "split": "dev (made by benchmarks/make_dev_cases.py)", "sources": [video.name],
            "licence": "as the source clip's: research use only, never commit or publish", "n_frames": n,
            "split_frame": split, "n_face": int(found.sum()), "inputs": meta_inputs, "targets": meta_targets}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def split_names(cache: Path, split: str) -> list[str]:
    """The clip names of a `video:` dataset split (the tracking cache decides which clips are usable)."""
    from stages.datasets import open_dataset

    return list(open_dataset(f"video:{cache}", CROP).subjects(split))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=Path, required=True, help="folder of the clips' video files")
    ap.add_argument("--out", type=Path, required=True, help="new folder for the cases")
    ap.add_argument("--cache", type=Path, help="the clips' tracking cache: take the names of --split from it")
    ap.add_argument("--split", default="val")
    ap.add_argument("--names", default="", help="comma-separated clip file names instead of --cache/--split")
    args = ap.parse_args(argv)
    names = [n for n in args.names.split(",") if n] or (split_names(args.cache, args.split) if args.cache else [])
    if not names:
        print("error: give --names or --cache (with --split)", file=sys.stderr)
        return 2
    if args.out.exists() and any(args.out.iterdir()):
        print(f"error: {args.out}: exists and is not empty; choose a new folder", file=sys.stderr)
        return 2
    made = 0
    for name in names:
        video = args.clips / name
        stem = "".join(c if c.isalnum() else "_" for c in Path(name).stem)
        try:
            meta = make_case(video, args.out / f"case_{stem}", stem)
        except (ValueError, OSError) as err:
            print(f"skipped {name}: {err}", file=sys.stderr)
            continue
        made += 1
        print(f"case_{stem}: {meta['n_frames']} frames, inputs {[m['frame'] for m in meta['inputs']]}, "
              f"targets {[m['frame'] for m in meta['targets']]}")
    print(f"dev-cases: made {made} of {len(names)} in {args.out}")
    return 0 if made else 1


if __name__ == "__main__":
    sys.exit(main())
