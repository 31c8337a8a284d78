"""Gaussians container and file formats: safetensors round trip, the standard 3DGS PLY layout (SPEC section 6,
checked against an independent writer and the raw header), the 32-byte .splat records, and bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.errors import BadInput
from stages.gaussians import (
    SH_C0,
    Gaussians,
    load_any,
    load_gaussians,
    ply_property_names,
    read_metadata,
    read_ply,
    save_gaussians,
    write_ply,
    write_splat,
)


def make(n: int = 7, sh_k: int = 0, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    sh = torch.randn(n, sh_k, 3, generator=gen) if sh_k else None
    return Gaussians(torch.randn(n, 3, generator=gen), torch.randn(n, 4, generator=gen),
                     torch.randn(n, 3, generator=gen) - 4, torch.randn(n, generator=gen),
                     torch.rand(n, 3, generator=gen) * 1.2 - 0.1, sh)


def assert_same(a: Gaussians, b: Gaussians, atol: float = 0.0) -> None:
    for name in ("means", "quats", "log_scales", "opacity_logits", "colors"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=atol, rtol=0)
    assert (a.sh_rest is None) == (b.sh_rest is None)
    if a.sh_rest is not None:
        torch.testing.assert_close(a.sh_rest, b.sh_rest, atol=atol, rtol=0)


# ----- container ------------------------------------------------------------------------------------------
def test_container_basics():
    g = make(5, sh_k=8)
    assert len(g) == 5 and g.sh_degree == 2 and make(3).sh_degree == 0
    sub = g.select(torch.tensor([True, False, True, False, True]))
    assert len(sub) == 3
    torch.testing.assert_close(sub.means, g.means[[0, 2, 4]])
    assert len(g.select([4, 0])) == 2 and torch.equal(g.select([4, 0]).colors[0], g.colors[4])
    assert len(g.select([True, False, False, True, False])) == 2  # a list of booleans is a mask
    both = Gaussians.cat([make(2), g])  # missing bands become zeros
    assert len(both) == 7 and both.sh_rest.shape == (7, 8, 3)
    assert both.sh_rest[:2].abs().sum() == 0 and torch.equal(both.sh_rest[2:], g.sh_rest)
    g64 = g.to(dtype=torch.float64)
    assert g64.means.dtype == torch.float64 and g64.sh_rest.dtype == torch.float64
    g.means.requires_grad_(True)
    assert not g.detach().means.requires_grad
    torch.testing.assert_close(g.opacities(), torch.sigmoid(g.opacity_logits))


@pytest.mark.parametrize("field,value", [("means", float("nan")), ("colors", float("inf")),
                                         ("opacity_logits", float("nan"))])
def test_validate_refuses_non_finite(field, value):
    g = make(4)
    getattr(g, field).view(-1)[1] = value
    with pytest.raises(BadInput, match=f"scene.ply.*{field}.*NaN or Inf"):
        g.validate("scene.ply")


def test_validate_refuses_bad_shapes_and_zero_quaternions():
    g = make(4)
    bad = Gaussians(g.means, g.quats[:3], g.log_scales, g.opacity_logits, g.colors)
    with pytest.raises(BadInput, match="quats"):
        bad.validate("x")
    with pytest.raises(BadInput, match="sh_rest"):
        Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, g.colors,
                  torch.zeros(4, 5, 3)).validate("x")
    g.quats[2] = 0
    with pytest.raises(BadInput, match="zero-length"):
        g.validate("x")


# ----- safetensors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sh_k", [0, 3, 15])
def test_safetensors_round_trip(tmp_path: Path, sh_k: int):
    g = make(9, sh_k)
    path = tmp_path / "g.safetensors"
    save_gaussians(path, g, {"source": "unit test", "step": 12})
    back = load_gaussians(path)
    assert_same(g, back)
    meta = read_metadata(path)
    assert meta["source"] == "unit test" and meta["step"] == "12" and meta["format"] == "avat3r-gaussians"
    assert_same(g, load_any(path))
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_safetensors_bad_files(tmp_path: Path):
    with pytest.raises(BadInput, match="not found"):
        load_gaussians(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file")
    with pytest.raises(BadInput, match="junk.safetensors"):
        load_gaussians(junk)
    g = make(3)
    g.colors[0, 0] = float("nan")
    from safetensors.torch import save_file

    nan_file = tmp_path / "nan.safetensors"
    save_file({k: getattr(g, k) for k in ("means", "quats", "log_scales", "opacity_logits", "colors")},
              str(nan_file))
    with pytest.raises(BadInput, match="nan.safetensors.*NaN"):
        load_gaussians(nan_file)
    with pytest.raises(BadInput, match="unknown Gaussian file type"):
        load_any(tmp_path / "g.obj")


# ----- PLY ------------------------------------------------------------------------------------------------
def independent_ply(path: Path, arr: np.ndarray) -> None:
    """Write a binary little-endian PLY by hand (no plyfile), as other 3DGS tools do."""
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(arr)}"]
    header += [f"property float {name}" for name in arr.dtype.names]
    header += ["end_header"]
    path.write_bytes(("\n".join(header) + "\n").encode("ascii") + arr.tobytes())


def test_reads_ply_from_an_independent_writer(tmp_path: Path):
    rng = np.random.default_rng(3)
    n, k = 6, 3  # SH degree 1: 9 f_rest values, channel-major (R0 R1 R2 G0 G1 G2 B0 B1 B2)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(9)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    arr = np.zeros(n, dtype=[(name, "<f4") for name in names])
    for name in names:
        arr[name] = rng.normal(size=n).astype(np.float32)
    path = tmp_path / "other_tool.ply"
    independent_ply(path, arr)
    g = read_ply(path)
    assert len(g) == n and g.sh_degree == 1
    np.testing.assert_allclose(g.means.numpy(), np.stack([arr["x"], arr["y"], arr["z"]], 1))
    f_dc = np.stack([arr[f"f_dc_{c}"] for c in range(3)], 1)
    np.testing.assert_allclose(g.colors.numpy(), 0.5 + SH_C0 * f_dc, rtol=1e-6)
    np.testing.assert_allclose(g.opacity_logits.numpy(), arr["opacity"])
    np.testing.assert_allclose(g.log_scales.numpy(), np.stack([arr[f"scale_{i}"] for i in range(3)], 1))
    np.testing.assert_allclose(g.quats.numpy(), np.stack([arr[f"rot_{i}"] for i in range(4)], 1))
    for c in range(3):  # channel c, coefficient j  <->  f_rest_{c*K + j}
        for j in range(k):
            np.testing.assert_allclose(g.sh_rest[:, j, c].numpy(), arr[f"f_rest_{c * k + j}"])


def parse_header(data: bytes) -> tuple[list[str], int]:
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end].decode("ascii").splitlines(), end


@pytest.mark.parametrize("sh_k", [0, 15])
def test_written_ply_matches_spec_layout(tmp_path: Path, sh_k: int):
    g = make(5, sh_k)
    path = tmp_path / "out.ply"
    write_ply(path, g)
    data = path.read_bytes()
    lines, start = parse_header(data)
    assert lines[0] == "ply" and lines[1] == "format binary_little_endian 1.0"
    assert "element vertex 5" in lines
    props = [ln.split() for ln in lines if ln.startswith("property")]
    assert all(p[1] == "float" for p in props), "every property must be float32"
    rest = [f"f_rest_{i}" for i in range(3 * sh_k)]
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + rest
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert [p[2] for p in props] == expected == ply_property_names(sh_k)
    body = np.frombuffer(data[start:], dtype="<f4").reshape(5, len(expected))
    col = {name: body[:, i] for i, name in enumerate(expected)}
    assert np.all(body[:, 3:6] == 0), "normals are zero"
    np.testing.assert_allclose(col["f_dc_1"], (g.colors[:, 1].numpy() - 0.5) / SH_C0, rtol=1e-6)
    np.testing.assert_allclose(col["opacity"], g.opacity_logits.numpy())
    np.testing.assert_allclose(col["scale_2"], g.log_scales[:, 2].numpy())
    np.testing.assert_allclose(col["rot_0"], g.quats[:, 0].numpy())
    if sh_k:
        np.testing.assert_allclose(col["f_rest_16"], g.sh_rest[:, 1, 1].numpy())  # G channel, coefficient 1
    assert_same(g, read_ply(path), atol=1e-6)
    assert_same(g, load_any(path), atol=1e-6)


def test_ply_bad_input(tmp_path: Path):
    with pytest.raises(BadInput, match="not found"):
        read_ply(tmp_path / "none.ply")
    arr = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    pts = tmp_path / "points.ply"
    independent_ply(pts, arr)
    with pytest.raises(BadInput, match="points.ply.*missing f_dc_0"):
        read_ply(pts)
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"\x00\x01 not a ply")
    with pytest.raises(BadInput, match="garbage.ply"):
        read_ply(garbage)


# ----- .splat ---------------------------------------------------------------------------------------------
def test_splat_byte_layout(tmp_path: Path):
    g = make(6)
    path = tmp_path / "x.splat"
    write_splat(path, g)
    data = path.read_bytes()
    assert len(data) == 32 * 6
    opacity = torch.sigmoid(g.opacity_logits.double())
    importance = (torch.exp(g.log_scales.double().sum(1)) * opacity).numpy()
    seen = []
    for r in range(6):
        rec = data[32 * r: 32 * (r + 1)]
        pos, scale = struct.unpack("<3f", rec[:12]), struct.unpack("<3f", rec[12:24])
        rgba, rot = np.frombuffer(rec[24:28], np.uint8), np.frombuffer(rec[28:32], np.uint8)
        i = int(np.argmin(np.abs(g.means[:, 0].numpy() - pos[0])))
        seen.append(i)
        np.testing.assert_allclose(pos, g.means[i].numpy())
        np.testing.assert_allclose(scale, torch.exp(g.log_scales[i]).numpy(), rtol=1e-6)
        want_rgb = np.clip(np.round(g.colors[i].numpy() * 255), 0, 255)
        np.testing.assert_array_equal(rgba[:3], want_rgb)
        assert rgba[3] == round(float(opacity[i]) * 255)
        q = (g.quats[i] / g.quats[i].norm()).numpy()
        np.testing.assert_allclose((rot.astype(np.float64) - 128) / 128, q, atol=1 / 128 + 1e-6)
    assert sorted(seen) == list(range(6))
    assert np.all(np.diff(importance[seen]) <= 0), "sorted by decreasing volume * opacity"
