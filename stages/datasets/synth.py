"""SPEC section 7 datasets on disk (what `avat3r synth` writes): DATASET/dataset.json and per subject a
transforms.json whose frames carry `timestep`, `camera` and `expression`, with RGBA images (alpha = mask).

The images are already square crops around the head in the normalised world, so `load` only resamples them to
the requested size (area filter down, bilinear up) and `cameras` rescales the intrinsics to match."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.cameras import Cameras
from stages.datasets.base import HeadDataset
from stages.errors import BadInput


class SynthDataset(HeadDataset):
    """A SPEC section 7 dataset folder."""

    kind = "synth"

    def __init__(self, root: str | Path, size: int, options: dict[str, str] | None = None):
        from stages.io import read_json

        super().__init__(root, size, options)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise BadInput("no dataset.json: not a SPEC section 7 dataset (see `avat3r synth`; Ava256 and "
                           "NeRSemble folders need an ava256: or nersemble: prefix)", self.root)
        self.meta = read_json(meta_path)
        names = self.meta.get("subjects") or sorted(p.parent.name for p in self.root.glob("*/transforms.json"))
        if not names:
            raise BadInput("no subjects", meta_path)
        self._names = sorted(str(n) for n in names)
        self._subjects: dict[str, dict] = {}

    @property
    def expression_space(self) -> tuple[str, int]:
        return str(self.meta.get("expression_space", "arkit52")), int(self.meta.get("expression_dim", 52))

    def all_subjects(self) -> list[str]:
        return list(self._names)

    def splits(self) -> dict[str, list[str]]:
        """dataset.json's `split` when it has one (what `avat3r synth` writes), else the shared rule."""
        split = self.meta.get("split")
        if isinstance(split, dict) and any(split.get(k) for k in ("train", "val", "test")):
            return {k: [str(s) for s in split.get(k, [])] for k in ("train", "val", "test")}
        return super().splits()

    def _subject(self, name: str) -> dict:
        if name not in self._subjects:
            from stages.cameras import read_transforms

            self.check_subject(name)
            tf = read_transforms(self.root / name / "transforms.json")
            frames: dict[tuple[int, int], int] = {}
            for i, f in enumerate(tf.frames):
                if "timestep" not in f.extra or "camera" not in f.extra or "expression" not in f.extra:
                    raise BadInput(f"frame {i} needs 'timestep', 'camera' and 'expression'",
                                   tf.root / "transforms.json")
                frames[(int(f.extra["timestep"]), int(f.extra["camera"]))] = i
            timesteps = sorted({t for t, _ in frames})
            cams = sorted({c for _, c in frames})
            missing = [(t, c) for t in timesteps for c in cams if (t, c) not in frames]
            if missing:
                raise BadInput(f"no frame for (timestep, camera) {missing[0]}", tf.root / "transforms.json")
            rig = Cameras.cat([tf.frames[frames[(timesteps[0], c)]].camera() for c in cams])
            self._subjects[name] = {"tf": tf, "frames": frames, "timesteps": timesteps, "cams": cams,
                                    "rig": rig.resized(self.size, self.size)}
        return self._subjects[name]

    def timesteps(self, subject: str) -> list[int]:
        return list(self._subject(subject)["timesteps"])

    def camera_names(self, subject: str) -> list[str]:
        return [str(c) for c in self._subject(subject)["cams"]]

    def cameras(self, subject: str, t: int) -> Cameras:
        return self._subject(subject)["rig"]

    def _frame(self, subject: str, t: int, cam_idx: int) -> tuple[dict, int]:
        s = self._subject(subject)
        key = (int(t), s["cams"][cam_idx])
        if key not in s["frames"]:
            raise BadInput(f"subject {subject} has no timestep {t}", s["tf"].root / "transforms.json")
        return s, s["frames"][key]

    def load(self, subject: str, t: int, cam_idx: int) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        from stages.io import read_image

        s, i = self._frame(subject, t, cam_idx)
        path = s["tf"].image_path(i)
        img = read_image(path)
        if img.shape[-1] != 4:
            raise BadInput("dataset images must be RGBA (alpha = mask)", path)
        if img.shape[0] != self.size or img.shape[1] != self.size:
            interp = cv2.INTER_AREA if img.shape[0] > self.size else cv2.INTER_LINEAR
            img = cv2.resize(img, (self.size, self.size), interpolation=interp)
        return np.ascontiguousarray(img[..., :3]), np.ascontiguousarray(img[..., 3])

    def codes(self, subject: str, t: int) -> np.ndarray | None:
        s, i = self._frame(subject, t, 0)
        return np.asarray(s["tf"].frames[i].extra["expression"], np.float32)
