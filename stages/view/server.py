"""The `avat3r view` web server (aiohttp): the page, its static files, and the frame protocol.

Routes: GET / (the page), GET /static/* (its JS/CSS), GET /api/info (channels, groups, presets, the --exp
timeline), POST /api/frame (one request → one image; for scripts and tests), POST /api/codes (an uploaded
codes.npy → its codes as JSON, checked), GET /ws (the live stream).

Latency: on the WebSocket the newest request wins. Requests that arrive while a frame renders overwrite one
pending slot, so the server never works through a backlog; the page also sends its next request only after
the previous frame arrived. Each frame goes out as a JSON text message (timings, id) then the image bytes.
Bad requests get a JSON error (HTTP 400/413, or an {"type": "error"} message on the socket) and the server
keeps going. POST /api/frame is latest-wins too: a request still waiting when a newer one arrives gets HTTP 409
instead of a render, and one whose client has gone is dropped, so abandoned requests never queue.

Cross-site protection: a web page the user opens elsewhere must not drive the avatar or read its frames. Every
request whose Origin header names another origin than the server's own is refused (403: cross-site WebSocket
hijacking, cross-origin POSTs), and, unless the server was bound to a non-loopback --host, so is every Host
header other than 127.0.0.1, localhost or [::1] with the server's port (403: DNS rebinding)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web

from stages.view.controls import FaceControls
from stages.view.renderer import Frame, ViewRenderer
from stages.view.requests import MAX_REQUEST_BYTES, FrameRequest, RequestError, parse_codes_upload, parse_request

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 32 * 2**20


@dataclass
class ViewSettings:
    """What the page is told at start-up."""

    default_size: int = 256
    max_size: int = 1024
    fps: float = 25.0  # timeline playback rate
    title: str = "avat3r view"
    any_host: bool = False  # True when bound to a non-loopback --host: other machines reach it by their names


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host(host: str) -> tuple[str, int | None]:
    """'name:port' / '[v6]:port' / 'name' → (name, port or None); the name keeps its brackets, in lower case."""
    host = host.strip().lower()
    name, sep, port = host.rpartition(":")
    if not sep or name.endswith(":") or (host.startswith("[") and not name.endswith("]")):
        return host, None  # no port (or a bare IPv6 address)
    return name, int(port) if port.isdigit() else -1


def host_allowed(host: str | None, port: int) -> bool:
    """Is a Host header one of this machine's loopback names with the server's port (DNS-rebinding guard)?"""
    if not host:
        return False
    name, given = _split_host(host)
    return name in LOOPBACK_NAMES and given in (port, None if port == 80 else port)


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """A request without Origin (scripts, curl) or from the page the server itself served."""
    if origin is None:
        return True
    return host is not None and origin.strip().lower() in (f"http://{host.strip().lower()}",
                                                          f"https://{host.strip().lower()}")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _frame_meta(frame: Frame, request: FrameRequest, skipped: int) -> dict:
    return {"type": "frame", "id": request.id, "mime": frame.mime, "decode_ms": round(frame.decode_ms, 2),
            "render_ms": round(frame.render_ms, 2), "cached": frame.cached, "skipped": skipped}


def create_app(renderer: ViewRenderer, controls: FaceControls, codes: np.ndarray | None = None,
               settings: ViewSettings | None = None) -> web.Application:
    """The aiohttp application serving one avatar."""
    settings = settings or ViewSettings()
    @web.middleware
    async def same_site_only(req: web.Request, handler):  # noqa: ANN001, ANN202 (aiohttp's handler type)
        sock = req.transport.get_extra_info("sockname") if req.transport else None
        port = sock[1] if sock else -1
        if not settings.any_host and not host_allowed(req.headers.get("Host"), port):
            return _error(403, f"Host {req.headers.get('Host')!r} is not this viewer's address; open "
                               f"http://127.0.0.1:{port}/ (start with --host to serve other names)")
        if not origin_allowed(req.headers.get("Origin"), req.headers.get("Host")):
            return _error(403, f"requests from {req.headers.get('Origin')!r} are refused: only the viewer's own "
                               "page may use it")
        return await handler(req)

    app = web.Application(client_max_size=MAX_UPLOAD_BYTES, middlewares=[same_site_only])
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avat3r-render")

    def parse(payload: str | bytes | dict) -> FrameRequest:
        return parse_request(payload, controls.names, settings.max_size, settings.default_size)

    async def render(request: FrameRequest) -> Frame:
        return await asyncio.get_running_loop().run_in_executor(executor, renderer.render, request)

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def info(_: web.Request) -> web.Response:
        body = {"controls": controls.to_json(), "size": settings.default_size, "max_size": settings.max_size,
                "fps": settings.fps, "title": settings.title, "device": str(renderer.device),
                "codes": None if codes is None else np.round(codes, 4).tolist()}
        return web.json_response(body)

    post_lock = asyncio.Lock()  # one POST frame renders at a time ...
    newest = {"ticket": 0}  # ... and only the newest waiting one is rendered next

    async def frame(req: web.Request) -> web.Response:
        if req.content_length is not None and req.content_length > MAX_REQUEST_BYTES:
            return _error(413, f"request of {req.content_length} bytes is larger than the {MAX_REQUEST_BYTES} "
                               "allowed")
        try:
            fr = parse(await req.read())
        except RequestError as exc:
            return _error(400, str(exc))
        newest["ticket"] += 1
        ticket = newest["ticket"]
        async with post_lock:
            if ticket != newest["ticket"]:
                return _error(409, "superseded by a newer frame request (the newest request wins)")
            if req.transport is None or req.transport.is_closing():
                return _error(409, "the client went away before its frame was rendered")
            out = await render(fr)
        headers = {"X-Decode-Ms": f"{out.decode_ms:.2f}", "X-Render-Ms": f"{out.render_ms:.2f}",
                   "X-Cached": "1" if out.cached else "0", "Cache-Control": "no-store"}
        return web.Response(body=out.data, content_type=out.mime, headers=headers)

    async def upload_codes(req: web.Request) -> web.Response:
        try:
            data = await req.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"upload is larger than the {MAX_UPLOAD_BYTES} bytes allowed")
        try:
            up = parse_codes_upload(data, controls.dim)
        except RequestError as exc:
            return _error(400, str(exc))
        return web.json_response({"codes": np.round(up, 4).tolist(), "frames": len(up)})

    async def stream(req: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=4 * MAX_REQUEST_BYTES, heartbeat=30.0)
        await ws.prepare(req)
        pending: list[FrameRequest] = []  # at most one: the newest request not yet rendered
        wake = asyncio.Event()
        skipped = 0

        async def worker() -> None:
            while not ws.closed:
                await wake.wait()
                wake.clear()
                if not pending:
                    continue
                fr = pending.pop()
                try:
                    out = await render(fr)
                except Exception as exc:  # report to the page and keep serving
                    await ws.send_json({"type": "error", "id": fr.id, "error": f"render failed: {exc}"})
                    continue
                if ws.closed:
                    return
                await ws.send_json(_frame_meta(out, fr, skipped))
                await ws.send_bytes(out.data)

        task = asyncio.create_task(worker())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        fr = parse(msg.data)
                    except RequestError as exc:
                        await ws.send_json({"type": "error", "error": str(exc)})
                        continue
                    if pending:
                        skipped += 1
                    pending[:] = [fr]
                    wake.set()
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_json({"type": "error", "error": "send frame requests as JSON text messages"})
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return ws

    async def shutdown(_: web.Application) -> None:
        executor.shutdown(wait=False, cancel_futures=True)

    app.router.add_get("/", index)
    app.router.add_get("/api/info", info)
    app.router.add_post("/api/frame", frame)
    app.router.add_post("/api/codes", upload_codes)
    app.router.add_get("/ws", stream)
    app.router.add_static("/static/", STATIC)
    app.on_shutdown.append(shutdown)
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one); OSError when the address is taken or not ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def _start(app: web.Application, sock: socket.socket) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


def serve_forever(app: web.Application, sock: socket.socket) -> None:
    """Serve until Ctrl-C (KeyboardInterrupt propagates after a clean shutdown)."""

    async def main() -> None:
        runner = await _start(app, sock)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


@contextlib.contextmanager
def serve_in_background(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the server on a thread of its own (tests, notebooks); yields its URL and stops on exit."""
    sock = bind(host, port)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        box["runner"] = loop.run_until_complete(_start(app, sock))
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="avat3r-view", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the view server did not start within 30 s")
    try:
        yield url_of(sock)
    finally:
        asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

