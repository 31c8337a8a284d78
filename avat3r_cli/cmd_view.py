"""`avat3r view AVATAR`: serve a local page that orbits the avatar and drives it with sliders, presets or a
codes timeline (rendered live on this machine); `--export DIR` writes a static offline page instead."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from avat3r_cli.common import (
    CompileOpt,
    DeviceOpt,
    ForceOpt,
    QuietOpt,
    SeedOpt,
    command,
    out_console,
    output_folder,
    parse_background,
    start_run,
)
from stages.errors import BadInput


@command
def view_cmd(
    avatar: Annotated[Path, typer.Argument(help="Avatar file from `avat3r reconstruct`.")],
    port: Annotated[int, typer.Option(help="TCP port to serve on (0 picks a free one).")] = 8765,
    host: Annotated[str, typer.Option(
        help="Address to bind. Anything but loopback exposes the avatar to your network.")] = "127.0.0.1",
    size: Annotated[int, typer.Option(help="Default frame size in pixels (square); the page can change it.")] = 256,
    max_size: Annotated[int, typer.Option(help="Largest frame size the page may ask for.")] = 1024,
    exp: Annotated[Path | None, typer.Option(
        "--exp", help="Expression codes .npy (T, D) for the timeline player (or for --export with --frame).")] = None,
    fps: Annotated[float, typer.Option(help="Timeline playback rate (frames per second).")] = 25.0,
    background: Annotated[str, typer.Option(help="white, black, grey or R,G,B in [0,1].")] = "white",
    cache: Annotated[int, typer.Option(help="How many expressions' Gaussians to keep cached.")] = 16,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Write a static offline page of one expression to this folder and exit.")] = None,
    frame: Annotated[int | None, typer.Option(
        "--frame", help="With --export: which code of --exp to show (0-based; default: the neutral face).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint; default: the avatar's own.")] = None,
    device: DeviceOpt = "auto",
    compile_frames: CompileOpt = False,
    quiet: QuietOpt = False,
    seed: SeedOpt = 0,
    force: ForceOpt = False,
) -> None:
    """Orbit the avatar in a browser and move its face with sliders or a codes timeline."""
    from stages.avatar import open_avatar
    from stages.expressions import load_codes
    from stages.view import ViewRenderer, ViewSettings, bind, create_app, export_page, face_controls, is_loopback
    from stages.view.server import serve_forever, url_of

    dev, rep = start_run(device, quiet, seed)
    if not 16 <= size <= max_size or max_size > 4096:
        raise BadInput("--size must lie in [16, --max-size] and --max-size at most 4096")
    if fps <= 0 or cache < 1:
        raise BadInput("--fps must be positive and --cache at least 1")
    if not 0 <= port <= 65535:
        raise BadInput(f"--port {port}: expected 0 to 65535")
    if frame is not None and (exp is None or export is None):
        raise BadInput("--frame picks the code of --exp to export; give --exp and --export too")
    bg = parse_background(background)
    output_folder(export, "--export")
    driver = open_avatar(avatar, checkpoint, dev, compile=compile_frames)
    codes = load_codes(exp, driver.expression_dim) if exp is not None else None
    renderer = ViewRenderer(driver, bg, cache)

    if export is not None:
        import numpy as np

        if frame is None:
            code = np.zeros(driver.expression_dim, np.float32)
        elif not 0 <= frame < len(codes):  # --frame comes with --exp (checked above), so codes were loaded
            raise BadInput(f"--frame {frame} is out of range: the file has {len(codes)} code(s)", exp)
        else:
            code = codes[frame]
        g, _ = renderer.gaussians(code)
        page = export_page(export, g, renderer.radius, renderer.focal_fraction, title=f"avat3r · {avatar.name}",
                           background=bg)
        rep.summary(f"wrote {page} ({len(g)} Gaussians, {page.stat().st_size / 2**20:.1f} MiB)")
        return

    controls = face_controls(driver.avatar.meta.get("expression_space", "arkit52"), driver.expression_dim)
    app = create_app(renderer, controls, codes, ViewSettings(size, max_size, fps, f"avat3r view · {avatar.name}",
                                                                      any_host=not is_loopback(host)))
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise BadInput(bind_failure(host, port, exc)) from None
    if not is_loopback(host):
        rep.log(f"[yellow]warning:[/] serving on {host}: anyone who can reach this machine can open the viewer")
    url = url_of(sock)
    try:
        out_console.print(f"avat3r view: open {url} in a browser (Ctrl-C stops)", soft_wrap=True)
        serve_forever(app, sock)
    except KeyboardInterrupt:
        pass
    rep.summary(f"served {renderer.frames} frames of {avatar} at {url}")


def bind_failure(host: str, port: int, exc: OSError) -> str:
    """Why the server could not listen, in one sentence that points at the option to change."""
    import errno
    import socket

    if isinstance(exc, socket.gaierror):
        return f"--host {host}: not an address or a host name this machine can resolve"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host}: not an address of this machine; use 127.0.0.1 or one of this machine's addresses"
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: the port is in use; try another --port (0 picks a free one)"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: ports below 1024 need privileges; try another --port"
    return f"cannot listen on {host}:{port} ({exc.strerror or exc})"


def register(app: typer.Typer) -> None:
    app.command("view")(view_cmd)
