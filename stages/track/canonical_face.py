"""MediaPipe's canonical face mesh (468 vertices in centimetres, 898 triangles) read from `face_landmarker.task`.

The task file is a zip; its `geometry_pipeline_metadata_landmarks.binarypb` is a small protobuf message
(`GeometryPipelineMetadata`: field 1 `canonical_mesh` = `Mesh3d` with field 3 `vertex_buffer`, 5 floats a
vertex x, y, z, u, v, and field 4 `index_buffer`, 3 indices a triangle). The landmarker's first 468 landmarks
follow the same vertex order, so the triangles connect detected landmarks too. The message is parsed here by
its wire format (a dozen lines) so no protobuf package or mediapipe build with the proto modules is needed.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from stages.errors import BadInput

METADATA = "geometry_pipeline_metadata_landmarks.binarypb"
MESH_VERTICES = 468


@dataclass(frozen=True)
class CanonicalFace:
    """The canonical face: vertices (468, 3) in cm (+x the subject's left, +y up, +z out of the face),
    triangles (T, 3) vertex indices, counter-clockwise seen from the front."""

    vertices: np.ndarray
    triangles: np.ndarray


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a protobuf message: ints for varints, bytes otherwise."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            n, i = _varint(data, i)
            value, i = data[i:i + n], i + n
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield key >> 3, wire, value


def parse_canonical_mesh(data: bytes) -> CanonicalFace:
    """The canonical mesh from the bytes of a `GeometryPipelineMetadata` message (packed or not)."""
    floats: list[float] = []
    indices: list[int] = []
    for field, _, value in _fields(data):
        if field != 1:
            continue
        for sub, wire, v in _fields(value):
            if sub == 3:
                floats.extend(struct.unpack(f"<{len(v) // 4}f", v))
            elif sub == 4 and wire == 0:
                indices.append(int(v))
            elif sub == 4:
                i = 0
                while i < len(v):
                    x, i = _varint(v, i)
                    indices.append(x)
    if len(floats) != 5 * MESH_VERTICES or len(indices) % 3 or not indices:
        raise ValueError(f"unexpected canonical mesh ({len(floats)} vertex floats, {len(indices)} indices)")
    verts = np.asarray(floats, np.float32).reshape(MESH_VERTICES, 5)[:, :3]
    tris = np.asarray(indices, np.int64).reshape(-1, 3)
    if tris.max() >= MESH_VERTICES:
        raise ValueError("canonical mesh triangle index out of range")
    return CanonicalFace(verts, tris)


@lru_cache(maxsize=4)
def load_canonical_face(task: str | Path) -> CanonicalFace:
    """The canonical mesh inside a `face_landmarker.task`; a BadInput naming the file when it holds none."""
    try:
        with zipfile.ZipFile(task) as z:
            data = z.read(METADATA)
        return parse_canonical_mesh(data)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, struct.error, IndexError) as exc:
        raise BadInput(f"no canonical face mesh in the face landmarker model ({exc})", task) from exc
