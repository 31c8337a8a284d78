"""`avat3r view` in a real browser (headless Chromium from Debian, driven by Selenium): the live page streams
frames, the jawOpen slider changes the mouth region, dragging orbits; the exported page draws offline from
file://. Skipped when chromium/chromedriver are not installed (`make setup` installs them as root)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from test_view_support import jaw_code, tiny_avatar

from stages.avatar import open_avatar
from stages.view import ViewRenderer, ViewSettings, create_app, export_page, face_controls, serve_in_background

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromedriver")
SIZE = 96


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800",
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-gpu-sandbox"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    root = tmp_path_factory.mktemp("view_browser")
    return root, tiny_avatar(root)


def _wait(predicate, timeout: float = 60.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _mouth(browser) -> np.ndarray:
    """The canvas pixels where a face's mouth is: the lower middle of the frame (rows 55-80%, cols 30-70%)."""
    rgba = browser.execute_script("""
        const c = document.getElementById('frame'); const w = c.width, h = c.height;
        const x = Math.floor(0.30 * w), y = Math.floor(0.55 * h);
        const d = c.getContext('2d').getImageData(x, y, Math.floor(0.40 * w), Math.floor(0.25 * h));
        return [d.width, d.height, Array.from(d.data)];""")
    w, h, data = rgba
    return np.asarray(data, np.float32).reshape(h, w, 4)[..., :3]


def test_live_page_streams_and_jaw_slider_moves_the_mouth(browser, avatar):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, path = avatar
    renderer = ViewRenderer(open_avatar(path, None, "cpu"))
    codes = np.stack([jaw_code(v) for v in (0.0, 0.25, 0.5, 0.75)])
    app = create_app(renderer, face_controls("arkit52", 52), codes, ViewSettings(SIZE, 256, 4.0))
    with serve_in_background(app) as url:
        assert url.startswith("http://127.0.0.1:")
        browser.get(url)
        frames = lambda: int(browser.execute_script("return Number(document.body.dataset.frames || 0)"))  # noqa: E731
        last_id = lambda: browser.execute_script("const m = window.avat3rView.lastMeta; return m ? m.id : 0")  # noqa: E731
        _wait(lambda: frames() >= 1, what="the first frame")
        assert browser.execute_script("return [document.getElementById('frame').width]") == [SIZE]
        before = _mouth(browser)
        assert before.std() > 1.0  # the head is in the mouth region, not just background

        slider = browser.find_element(By.ID, "ch-jawOpen")
        seen = last_id()
        slider.send_keys(Keys.END)  # the keyboard moves the range input to its maximum
        assert browser.execute_script("return window.avat3rView.code[17]") == 1.0
        _wait(lambda: last_id() > seen, what="a frame after moving jawOpen")
        after = _mouth(browser)
        assert np.abs(after - before).mean() > 1.0, "the mouth region did not change"
        assert browser.find_element(By.ID, "fps").text.endswith("fps")

        seen = last_id()
        canvas = browser.find_element(By.ID, "frame")
        ActionChains(browser).click_and_hold(canvas).move_by_offset(60, 0).release().perform()
        _wait(lambda: last_id() > seen, what="a frame after dragging")
        azimuth = browser.execute_script("return window.avat3rView.camera.azimuth")
        assert azimuth < -10  # dragging right swings the camera toward the subject's right

        seen = last_id()
        browser.find_element(By.ID, "play").click()  # the --exp timeline, at 4 fps
        _wait(lambda: browser.execute_script("return window.avat3rView.frameIndex") > 0, what="the timeline to move")
        _wait(lambda: last_id() > seen, what="a frame while playing")
        assert browser.execute_script("return window.avat3rView.playing")
        browser.find_element(By.ID, "play").click()  # pause: the shown code is the current timeline frame's
        k, code, playing = browser.execute_script(
            "const v = window.avat3rView; return [v.frameIndex, v.code, v.playing]")
        assert not playing and k > 0 and np.allclose(code, codes[k], atol=1e-4)
        assert browser.find_element(By.ID, "frame-label").text == f"frame {k + 1} / {len(codes)}"

        preset = browser.find_element(By.CSS_SELECTOR, "button[data-preset='neutral']")
        preset.click()
        assert browser.execute_script("return window.avat3rView.code.every((v) => v === 0)")
        assert not browser.find_element(By.ID, "error").is_displayed()


def test_exported_page_draws_from_disk(browser, avatar):
    root, path = avatar
    renderer = ViewRenderer(open_avatar(path, None, "cpu"))
    g, _ = renderer.gaussians(np.zeros(52, np.float32))
    page = export_page(root / "export", g, renderer.radius, renderer.focal_fraction)
    browser.get("about:blank")
    browser.get_log("browser")  # drop what earlier pages logged (the live page's reconnect attempts)
    browser.get(page.as_uri())
    _wait(lambda: int(browser.execute_script("return Number(document.body.dataset.frames || 0)")) > 3,
          what="the offline page to draw")
    time.sleep(1.0)  # the sorting worker answers asynchronously
    drawn = browser.execute_script("""
        const v = window.splatView; const gl = v.renderer.gl;
        v.renderer.render(v.scene, v.camera);
        const w = gl.drawingBufferWidth, h = gl.drawingBufferHeight, px = new Uint8Array(w * h * 4);
        gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
        let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
        return [n, v.splat.data.vertexCount];""")
    assert drawn[1] == len(g)
    assert drawn[0] > 200, "the offline page drew no Gaussians"
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
