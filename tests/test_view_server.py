"""`avat3r view` without a browser: request checking, face controls, the per-code cache, the orbit camera, the
aiohttp server (frames, bad requests, uploads, the latest-wins WebSocket), the CLI, and the static export."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re

import cv2
import numpy as np
import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer
from test_view_support import jaw_code, tiny_avatar
from typer.testing import CliRunner

from avat3r_cli.app import app as cli
from stages.avatar import open_avatar
from stages.expressions import ARKIT52
from stages.gaussians import Gaussians
from stages.gaussians.io import SPLAT_DTYPE
from stages.view import (
    CameraState,
    GaussianCache,
    RequestError,
    ViewRenderer,
    ViewSettings,
    bind,
    create_app,
    face_controls,
    is_loopback,
    orbit_camera,
    page_html,
    parse_codes_upload,
    parse_request,
    to_viewer_frame,
)
from stages.view.requests import MAX_REQUEST_BYTES

NAMES = ARKIT52


# ----- requests ---------------------------------------------------------------------------------------------
def test_parse_request_accepts_codes_weights_and_cameras():
    r = parse_request('{"weights": {"jawOpen": 0.8}, "camera": {"azimuth": 30, "pan": [0.01, 0]}, "size": 128, '
                      '"format": "png", "id": 3}', NAMES, 512, 256)
    assert r.code[ARKIT52.index("jawOpen")] == pytest.approx(0.8) and r.code.sum() == pytest.approx(0.8)
    assert r.camera == CameraState(30.0, 5.0, 1.0, (0.01, 0.0)) and (r.size, r.format, r.id) == (128, "png", 3)
    full = parse_request({"code": [0.5] * 52}, NAMES, 512, 256)
    assert full.code.shape == (52,) and full.size == 256 and full.format == "jpeg"


@pytest.mark.parametrize("payload, fragment", [
    ('{"code": [0.1, 0.2]}', "has 2 values"),
    ('{"code": [NaN' + ', 0' * 51 + ']}', "finite"),
    ('{"weights": {"jawOpn": 1}}', "unknown expression channel"),
    ('{"weights": {"jawOpen": "a lot"}}', "must be a number"),
    ('{"colour": 1}', "unknown request field"),
    ('{"size": 4096}', "size must be"),
    ('{"camera": {"elevation": 120}}', "camera.elevation"),
    ('{"camera": {"zoom": 2}}', "unknown camera field"),
    ('{"format": "gif"}', "format must be"),
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"code": []}', "has 0 values"),
])
def test_parse_request_refuses_bad_input(payload, fragment):
    with pytest.raises(RequestError, match=re.escape(fragment)):
        parse_request(payload, NAMES, 512, 256)


def test_parse_request_refuses_huge_payloads():
    with pytest.raises(RequestError, match="larger than"):
        parse_request(" " * (MAX_REQUEST_BYTES + 1), NAMES, 512, 256)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def test_codes_upload_is_checked():
    assert parse_codes_upload(_npy(np.zeros((5, 52), np.float32)), 52).shape == (5, 52)
    assert parse_codes_upload(_npy(np.zeros(52)), 52).shape == (1, 52)
    bad_arrays = [(np.zeros((5, 50)), "width 50"), (np.full((2, 52), np.nan), "NaN"), (np.zeros((0, 52)), "shape")]
    for bad, fragment in bad_arrays:
        with pytest.raises(RequestError, match=fragment):
            parse_codes_upload(_npy(bad), 52)
    with pytest.raises(RequestError, match="not a NumPy .npy file"):
        parse_codes_upload(b"hello", 52)
    with pytest.raises(RequestError, match="Python objects"):
        parse_codes_upload(_npy(np.array([{"a": 1}], dtype=object)), 52)


# ----- controls, cache, camera ------------------------------------------------------------------------------
def test_face_controls_group_every_arkit_channel_once():
    c = face_controls("arkit52", 52)
    flat = [n for names in c.groups.values() for n in names]
    assert sorted(flat) == sorted(ARKIT52) and len(flat) == 52
    assert list(c.groups) == ["brows", "eyes", "jaw", "mouth", "cheeks", "nose", "tongue"]
    assert all(n.startswith("mouth") for n in c.groups["mouth"]) and c.groups["tongue"] == ["tongueOut"]
    assert {"neutral", "smile", "open mouth", "blink", "surprise"} <= set(c.presets)
    for code in c.presets.values():
        assert len(code) == 52 and all(0.0 <= v <= 1.0 for v in code)
    assert c.presets["open mouth"][ARKIT52.index("jawOpen")] > 0.5 and not any(c.presets["neutral"])
    other = face_controls("flame", 10)
    assert other.dim == 10 and list(other.groups) == ["code"] and other.low < 0 < other.high


def test_cache_skips_the_network_for_a_known_code_and_evicts_oldest():
    calls = []

    def make(code):
        calls.append(code.copy())
        return float(code.sum())

    cache = GaussianCache(capacity=2)
    a, b, c = np.zeros(3, np.float32), np.ones(3, np.float32), np.full(3, 2, np.float32)
    assert cache.get(a, make) == (0.0, False) and cache.get(a.copy(), make) == (0.0, True)
    cache.get(b, make)
    cache.get(c, make)  # evicts a
    assert len(cache) == 2 and len(calls) == 3
    assert cache.get(a, make)[1] is False and len(calls) == 4


def test_orbit_camera_frames_the_head_from_the_requested_side():
    front = orbit_camera(CameraState(0.0, 0.0, 1.0, (0.0, 0.0)), 1.0, 3.0, 64)
    assert torch.allclose(front.centers()[0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)
    assert front.width == 64 and float(front.fx[0]) == pytest.approx(192.0)
    uv, _ = front.project(torch.zeros(1, 3))  # the head centre lands in the image centre
    assert torch.allclose(uv.reshape(-1)[:2], torch.tensor([32.0, 32.0]), atol=1e-3)
    left = orbit_camera(CameraState(90.0, 0.0, 2.0, (0.0, 0.0)), 1.0, 3.0, 64)
    assert torch.allclose(left.centers()[0], torch.tensor([2.0, 0.0, 0.0]), atol=1e-5)  # subject's left is +x
    panned = orbit_camera(CameraState(0.0, 0.0, 1.0, (0.1, 0.0)), 1.0, 3.0, 64)
    assert torch.allclose(panned.centers()[0], torch.tensor([0.1, 0.0, 1.0]), atol=1e-5)


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    sock = bind("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()[:2]
        assert host == "127.0.0.1" and port > 0
    finally:
        sock.close()


# ----- the server -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def avatar_path(tmp_path_factory):
    return tiny_avatar(tmp_path_factory.mktemp("view"))


@pytest.fixture(scope="module")
def renderer(avatar_path):
    torch.manual_seed(0)
    return ViewRenderer(open_avatar(avatar_path, None, "cpu"))


def _run(renderer, body, codes=None):
    """Run `body(client)` against a fresh app on a test server."""

    async def main():
        app = create_app(renderer, face_controls("arkit52", 52), codes, ViewSettings(48, 128, 25.0))
        async with TestClient(TestServer(app)) as client:
            return await body(client)

    return asyncio.run(main())


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_page_info_and_frames(renderer):
    async def body(client):
        page = await client.get("/")
        assert page.status == 200 and "viewer.js" in await page.text()
        js = await client.get("/static/viewer.js")
        assert js.status == 200 and "WebSocket" in await js.text()
        info = await (await client.get("/api/info")).json()
        assert info["controls"]["names"] == list(ARKIT52) and info["size"] == 48 and info["codes"] is None
        r1 = await client.post("/api/frame", data=json.dumps({"code": jaw_code(0.0).tolist()}))
        assert r1.status == 200 and r1.content_type == "image/jpeg"
        img = _decode(await r1.read())
        assert img.shape == (48, 48, 3) and img.std() > 1  # something was drawn on the white background
        r2 = await client.post("/api/frame", data=json.dumps({"camera": {"azimuth": 40}, "size": 32,
                                                               "format": "png"}))
        assert r2.headers["X-Cached"] == "1"  # same (neutral) code: the network was skipped
        assert r2.content_type == "image/png" and _decode(await r2.read()).shape == (32, 32, 3)
        r3 = await client.post("/api/frame", data=json.dumps({"weights": {"jawOpen": 1.0}, "size": 32,
                                                               "format": "png"}))
        assert r3.headers["X-Cached"] == "0" and float(r3.headers["X-Decode-Ms"]) > 0

    _run(renderer, body)


def test_bad_requests_get_clear_errors_and_the_server_keeps_going(renderer):
    async def body(client):
        for payload, status, fragment in [
            ('{"code": [0.1, 0.2]}', 400, "has 2 values"),
            ('{"code": [NaN' + ', 0' * 51 + ']}', 400, "finite"),
            ('{"weights": {"smile": 1}}', 400, "unknown expression channel"),
            ("x" * (MAX_REQUEST_BYTES + 10), 413, "larger than"),
        ]:
            r = await client.post("/api/frame", data=payload)
            assert r.status == status
            assert fragment in (await r.json())["error"]
        big = await client.post("/api/codes", data=b"\0" * (40 * 2**20))
        assert big.status == 413 and "larger than" in (await big.json())["error"]
        bad = await client.post("/api/codes", data=_npy(np.zeros((3, 7), np.float32)))
        assert bad.status == 400 and "width 7" in (await bad.json())["error"]
        ok = await client.post("/api/codes", data=_npy(np.stack([jaw_code(0.0), jaw_code(1.0)])))
        body = await ok.json()
        assert ok.status == 200 and body["frames"] == 2 and body["codes"][1][17] == 1.0
        still = await client.post("/api/frame", data="{}")
        assert still.status == 200 and _decode(await still.read()).shape == (48, 48, 3)

    _run(renderer, body)


def test_websocket_streams_frames_and_newest_request_wins(renderer):
    async def body(client):
        ws = await client.ws_connect("/ws")
        await ws.send_str('{"code": [1, 2]}')
        err = await ws.receive_json(timeout=30)
        assert err["type"] == "error" and "has 2 values" in err["error"]
        await ws.send_str(" " * (MAX_REQUEST_BYTES + 1))
        err = await ws.receive_json(timeout=30)
        assert err["type"] == "error" and "larger than" in err["error"]
        await ws.send_str(json.dumps({"id": 1, "size": 32}))
        meta = await ws.receive_json(timeout=30)
        assert meta["type"] == "frame" and meta["id"] == 1
        assert _decode(await ws.receive_bytes(timeout=30)).shape == (32, 32, 3)
        # A burst of 6 requests while the server is busy: it renders the first and then only the newest.
        for i in range(2, 8):
            await ws.send_str(json.dumps({"id": i, "size": 32, "code": jaw_code(i / 10).tolist()}))
        ids = []
        while not ids or ids[-1] != 7:
            meta = await ws.receive_json(timeout=30)
            assert meta["type"] == "frame"
            await ws.receive_bytes(timeout=30)
            ids.append(meta["id"])
        assert len(ids) < 6 and ids == sorted(ids) and meta["skipped"] >= 6 - len(ids)
        await ws.close()

    _run(renderer, body)


def test_info_carries_the_exp_timeline(renderer):
    codes = np.stack([jaw_code(0.0), jaw_code(0.5), jaw_code(1.0)])

    async def body(client):
        info = await (await client.get("/api/info")).json()
        assert np.allclose(info["codes"], codes, atol=1e-4)

    _run(renderer, body, codes)


# ----- CLI and static export --------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_defaults_to_loopback_and_refuses_bad_input(tmp_path, avatar_path):
    help_text = runner.invoke(cli, ["view", "--help"], terminal_width=200).output
    assert "127.0.0.1" in help_text and "--export" in help_text and "--size" in help_text
    missing = runner.invoke(cli, ["view", str(tmp_path / "nope.safetensors"), "--device", "cpu"])
    assert missing.exit_code == 2 and "not found" in missing.output
    np.save(tmp_path / "wide.npy", np.zeros((2, 40), np.float32))
    wide = runner.invoke(cli, ["view", str(avatar_path), "--exp", str(tmp_path / "wide.npy"), "--device", "cpu"])
    assert wide.exit_code == 2 and "width 40" in wide.output
    frame_only = runner.invoke(cli, ["view", str(avatar_path), "--frame", "1", "--device", "cpu"])
    assert frame_only.exit_code == 2 and "--frame" in frame_only.output


def test_viewer_frame_is_a_rotation_about_x():
    g = torch.Generator().manual_seed(1)
    n = 50
    src = Gaussians(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g), torch.randn(n, 3, generator=g),
                    torch.randn(n, generator=g), torch.rand(n, 3, generator=g))
    out = to_viewer_frame(src)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(out.means, src.means @ flip)

    def cov(x: Gaussians) -> torch.Tensor:
        from stages.render import scaled_rotations

        rs = scaled_rotations(x.quats / x.quats.norm(dim=1, keepdim=True), x.log_scales.exp())
        return rs @ rs.transpose(1, 2)

    assert torch.allclose(cov(out), flip @ cov(src) @ flip, atol=1e-5)


def test_export_writes_a_self_contained_page(tmp_path, avatar_path):
    codes = np.stack([jaw_code(0.0), jaw_code(1.0)])
    np.save(tmp_path / "codes.npy", codes)
    out = tmp_path / "page"
    r = runner.invoke(cli, ["view", str(avatar_path), "--export", str(out), "--exp", str(tmp_path / "codes.npy"),
                            "--frame", "1", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    html = (out / "index.html").read_text()
    assert "src=" not in html.split("<script type=\"module\">")[0].split("<body>")[1]  # nothing to fetch
    data = re.search(r'id="splat-data" type="application/octet-stream">([^<]*)<', html).group(1)
    records = np.frombuffer(base64.b64decode(data), SPLAT_DTYPE)
    config = json.loads(re.search(r'id="avatar-config" type="application/json">([^<]*)<', html).group(1))
    driver = open_avatar(avatar_path, None, "cpu")
    g = driver.gaussians(codes[1])
    assert len(records) == len(g) == config["count"] and config["radius"] > 0
    # the page holds this expression's Gaussians, rotated into the viewer's frame
    expect = np.sort(to_viewer_frame(g).means[:, 1].numpy())
    assert np.allclose(np.sort(records["position"][:, 1]), expect, atol=1e-6)
    assert "LoadFromArrayBuffer" in html and "{{" not in html
    assert len(page_html(g, 1.0, 3.0)) < len(html) + 100  # one file: bundle + data, nothing else


def test_bundle_is_small_and_shipped():
    from stages.view.export import STATIC

    bundle = STATIC / "splat_bundle.js"
    assert bundle.is_file() and bundle.stat().st_size < 2 * 2**20
    assert "gsplat.js" in bundle.read_text()[:300]  # the licence banner


@pytest.mark.gpu
def test_cuda_frames_match_cpu_frames(avatar_path, renderer):
    """On a GPU the viewer renders with gsplat; its frames must show what the CPU path shows."""
    from stages.view import FrameRequest

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gpu = ViewRenderer(open_avatar(avatar_path, None, "cuda"))
    req = FrameRequest(jaw_code(0.5), CameraState(20.0, 5.0, 1.0, (0.0, 0.0)), 64, "png")
    a, b = (_decode(r.render(req).data).astype(np.float32) for r in (renderer, gpu))
    assert np.abs(a - b).mean() < 3.0


# ----- cross-site protection and POST latest-wins ---------------------------------------------------------
def test_host_and_origin_rules():
    from stages.view.server import host_allowed, origin_allowed

    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST:8765"):
        assert host_allowed(host, 8765), host
    for host in ("attacker.example.com:8765", "127.0.0.1:9999", "127.0.0.1.evil.com:8765", "", None,
                 "localhost", "[::1]"):
        assert not host_allowed(host, 8765), host
    assert host_allowed("localhost", 80)
    assert origin_allowed(None, "127.0.0.1:8765") and origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert not origin_allowed("http://evil.example.com", "127.0.0.1:8765")
    assert not origin_allowed("null", "127.0.0.1:8765")


def test_foreign_origins_and_host_names_are_refused(renderer):
    """A page on another site (cross-site WebSocket hijacking, a text/plain POST) or a rebinding DNS name must get
    nothing from a server bound to 127.0.0.1; the server's own page still works."""
    evil = {"Origin": "http://evil.example.com"}

    async def body(client):
        own = f"http://{client.host}:{client.port}"
        ok = await client.post("/api/frame", data="{}", headers={"Origin": own, "Content-Type": "text/plain"})
        assert ok.status == 200
        r = await client.post("/api/frame", data="{}", headers={**evil, "Content-Type": "text/plain"})
        assert r.status == 403 and "refused" in (await r.json())["error"]
        up = await client.post("/api/codes", data=_npy(np.zeros((2, 52), np.float32)), headers=evil)
        assert up.status == 403
        for path in ("/", "/api/info", "/static/viewer.js"):
            rebound = await client.get(path, headers={"Host": f"attacker.example.com:{client.port}"})
            assert rebound.status == 403, path
        with pytest.raises(Exception):  # noqa: B017 (aiohttp raises WSServerHandshakeError, a ClientError)
            await client.ws_connect("/ws", headers=evil)
        with pytest.raises(Exception):  # noqa: B017
            await client.ws_connect("/ws", headers={"Host": f"attacker.example.com:{client.port}"})
        ws = await client.ws_connect("/ws", headers={"Origin": own})
        await ws.send_str(json.dumps({"id": 1, "size": 32}))
        assert (await ws.receive_json(timeout=30))["id"] == 1
        await ws.close()

    _run(renderer, body)


class _SlowRenderer:
    """The real renderer, 0.25 s slower per frame, counting its renders."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def render(self, request):
        import time

        self.calls += 1
        time.sleep(0.25)
        return self.inner.render(request)


def test_post_frames_are_latest_wins(renderer):
    """20 requests fired at once, then one more: only a few are rendered and the last comes back promptly
    (queued one after another they would take 21 × 0.25 s)."""
    import time

    slow = _SlowRenderer(renderer)

    async def body(client):
        burst = [asyncio.create_task(client.post("/api/frame", data=json.dumps({"id": i, "size": 16})))
                 for i in range(20)]
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        last = await client.post("/api/frame", data=json.dumps({"id": 99, "size": 16}))
        waited = time.perf_counter() - t0
        assert last.status == 200
        statuses = [r.status for r in await asyncio.gather(*burst)]
        assert statuses.count(409) >= 17 and set(statuses) <= {200, 409}
        assert slow.calls <= 3 and waited < 2.0, (slow.calls, waited)

    async def main():
        app = create_app(slow, face_controls("arkit52", 52), None, ViewSettings(48, 128, 25.0))
        async with TestClient(TestServer(app)) as client:
            return await body(client)

    asyncio.run(main())
