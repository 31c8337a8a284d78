"""Pure-torch rasteriser (CPU or CUDA) that reproduces gsplat's image formation for projected Gaussians.

gsplat composites, per pixel and front to back, alpha = min(0.999, opacity * exp(-sigma)) with pixel centres
at +0.5, skips alphas below 1/255, and stops before the Gaussian that would bring the transmittance to 1e-4 or
below. Here the same sums are vectorised with ordinary tensor operations:

1. Binning: each Gaussian is listed in the small square tiles (4-16 px) of its opacity-aware 3-sigma box
   that the ellipse where its alpha reaches 1/255 touches; the lists are sorted by (image, tile, depth).
2. Rounds: every active tile takes its next B Gaussians at once. sigma - log(opacity) is a quadratic
   polynomial in the pixel offset, so a (tiles*B, 6) x (6, pixels) matrix product gives it for every
   (Gaussian, pixel) pair; alpha, a cumulative product of (1 - alpha) along B and the carried transmittance
   give each pair's weight, and a batched matrix product deposits colour, depth and weight per pixel.
3. Early termination: a pixel whose transmittance would fall to 1e-4 gets transmittance 0 from then on
   (its true value is kept aside), and a tile leaves the rounds once its list ends or all its pixels are done.

Everything differentiable is ordinary torch, so autograd gives gradients for means, conics, opacities,
colours and depths; the discrete choices (culling, ordering, termination) are constants, as in gsplat.
When nothing needs a gradient, step 2-3 run in `fastpath` instead: the same sums, several times faster.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from stages.render import fastpath
from stages.render.projection import ALPHA_THRESHOLD, Projected

T_STOP = 1e-4  # gsplat stops at transmittance <= 1e-4 (that Gaussian is not composited)
ALPHA_MAX = 0.999
PAD_ENERGY = 1e4  # sigma - log(opacity) of padding slots: alpha = exp(-1e4) = 0


@dataclass
class Bins:
    """Tile lists: `gid[offset[t] : offset[t] + count[t]]` are tile t's Gaussians, front to back. They are
    kept as depth ranks (`gid = order[rank]`): tables laid out in depth order are read nearly in sequence."""

    order: Tensor  # (m,) the listed Gaussians (index into the concatenated projected ones), front to back
    rank: Tensor  # (n_isect,) index into `order`
    count: Tensor  # (n_tiles,)
    offset: Tensor  # (n_tiles,)

    @functools.cached_property
    def gid(self) -> Tensor:
        """(n_isect,) index into the concatenated projected Gaussians."""
        return self.order.index_select(0, self.rank)


def pixel_boxes(means2d: Tensor, radii: Tensor, width: int, height: int) -> tuple[Tensor, ...]:
    """Inclusive pixel ranges (x0, x1, y0, y1) whose centres lie within each Gaussian's radii, clipped to the
    image. Outside this box alpha < 1/255 (the radii bound the ellipse where alpha reaches 1/255)."""
    m = means2d.detach()
    r = radii.to(m.dtype)
    x0 = torch.ceil(m[:, 0] - r[:, 0] - 0.5).clamp_min(0).long()
    x1 = torch.floor(m[:, 0] + r[:, 0] - 0.5).clamp_max(width - 1).long()
    y0 = torch.ceil(m[:, 1] - r[:, 1] - 0.5).clamp_min(0).long()
    y1 = torch.floor(m[:, 1] + r[:, 1] - 0.5).clamp_max(height - 1).long()
    return x0, x1, y0, y1


def depth_order(depths: Tensor) -> Tensor:
    """Indices that sort `depths` ascending, ties in index order. Positive floats order like their bit
    patterns read as integers, and integer sorts are several times faster than float sorts on the CPU."""
    d = depths.detach()
    if d.numel() and d.dtype in (torch.float32, torch.float64) and bool((d > 0).all()):
        return torch.sort(d.view(torch.int32 if d.dtype == torch.float32 else torch.int64), stable=True).indices
    return torch.argsort(d, stable=True)


def ellipse_rows(means2d: Tensor, conics: Tensor, opacities: Tensor, margin: float = 0.01) -> Tensor:
    """Per Gaussian, what `ellipse_row_span` needs: (M, 7) mean x, mean y, the height of the rightmost point
    of the alpha >= 1/255 ellipse (relative to the mean), 2 a L, det, 1 / a, b / a.

    The ellipse is sigma <= L = log(255 opacity) (+ `margin`, so that rounding in the compositor never
    needs an entry that was dropped); sigma = a dx² / 2 + b dx dy + c dy² / 2 from the conic (a, b, c)."""
    a, b, c = conics.detach().unbind(-1)
    big_l = torch.log(opacities.detach() / ALPHA_THRESHOLD).clamp_min(0.0) + margin
    det = a * c - b * b
    dy_right = -b / c * torch.sqrt(2.0 * big_l * c / det)
    mx, my = means2d.detach().unbind(-1)
    return torch.stack([mx, my, dy_right, 2.0 * a * big_l, det, 1.0 / a, b / a], -1)


def ellipse_row_span(rows: Tensor, y_lo: Tensor, y_hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The continuous x range that pixel centres of the rows y_lo..y_hi need, for Gaussians given by
    `ellipse_rows` values (one row each), and whether those rows meet the ellipse at all.

    For a given height the ellipse spans x = mx + (-b dy ± sqrt(2 a L - det dy²)) / a. The right end is
    concave in dy, so over the band it is largest at the height of the ellipse's rightmost point or at the
    band's edge nearest to it; the left end likewise (its extreme height is the negated one)."""
    mx, my, dy_right, two_a_l, det, inv_a, b_over_a = rows.unbind(-1)
    d0, d1 = y_lo.to(rows.dtype) + (0.5 - my), y_hi.to(rows.dtype) + (0.5 - my)
    dr = torch.clamp(dy_right, d0, d1)
    dl = torch.clamp(-dy_right, d0, d1)
    arg_r = two_a_l - det * dr * dr
    arg_l = two_a_l - det * dl * dl
    right = mx + arg_r.clamp_min(0.0).sqrt_().mul_(inv_a) - b_over_a * dr
    left = mx - arg_l.clamp_min(0.0).sqrt_().mul_(inv_a) - b_over_a * dl
    return left, right, arg_r >= 0


def bin_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, image_ids: Tensor, n_images: int, width: int,
              height: int, tile: int, conics: Tensor | None = None, opacities: Tensor | None = None) -> Bins:
    """Sort (Gaussian, tile) intersections by (image, tile, depth); ties in depth keep index order, like
    gsplat's stable radix sort.

    The intersections are listed Gaussian by Gaussian in depth order, each Gaussian's tile rows first and
    then each row's tiles (no integer division over the long list), and one sort of the unique key
    tile * M + depth rank gives the lists. With `conics` and `opacities`, each tile row only lists the tiles
    that the alpha >= 1/255 ellipse reaches (not all of the bounding box's), which drops only entries that
    would composite nothing."""
    dev = means2d.device
    tw, th = -(-width // tile), -(-height // tile)
    x0, x1, y0, y1 = pixel_boxes(means2d, radii, width, height)
    order = depth_order(depths)
    order = order[((x1 >= x0) & (y1 >= y0))[order]]
    m = len(order)
    x0, x1, y0, y1 = (t.index_select(0, order) for t in (x0, x1, y0, y1))
    ty0 = y0 // tile
    nrows = y1 // tile - ty0 + 1
    # one entry per (Gaussian, tile row): its first tile and its number of tiles
    gr = torch.repeat_interleave(torch.arange(m, device=dev, dtype=torch.int32), nrows)
    tile_row = (ty0 - torch.cumsum(nrows, 0) + nrows).index_select(0, gr) + torch.arange(len(gr), device=dev)
    row_x0, row_x1 = x0.index_select(0, gr), x1.index_select(0, gr)
    if conics is not None and opacities is not None:
        band = tile_row * tile
        left, right, meets = ellipse_row_span(
            ellipse_rows(means2d, conics, opacities).index_select(0, order).index_select(0, gr),
            torch.maximum(band, y0.index_select(0, gr)), torch.minimum(band + tile - 1, y1.index_select(0, gr)))
        row_x0 = torch.maximum(row_x0, torch.ceil(left - 0.5).long())
        row_x1 = torch.where(meets, torch.minimum(row_x1, torch.floor(right - 0.5).long()), -1)
    first_col = row_x0 // tile
    ncols_r = ((row_x1 // tile - first_col + 1) * (row_x1 >= row_x0)).int()
    first = (image_ids.index_select(0, order).index_select(0, gr) * th + tile_row) * tw + first_col
    n_isect = int(ncols_r.sum())
    # one entry per (Gaussian, tile): tile = first + (i - start of its row's run)
    ri = torch.repeat_interleave(torch.arange(len(gr), device=dev, dtype=torch.int32), ncols_r,
                                 output_size=n_isect)
    idx_dtype = torch.int32 if n_images * tw * th * max(m, 1) < 2**31 else torch.int64
    run_start = (first - torch.cumsum(ncols_r, 0) + ncols_r).to(idx_dtype)
    tile_id = torch.arange(n_isect, device=dev, dtype=idx_dtype).add_(run_start.index_select(0, ri))
    count = torch.bincount(tile_id, minlength=n_images * tw * th)
    key = tile_id.mul_(m).add_(gr.index_select(0, ri))  # unique: tile, then depth rank
    rank = torch.sort(key).values.remainder_(max(m, 1))
    return Bins(order, rank, count, torch.cumsum(count, 0) - count)


def choose_tile(radii: Tensor) -> int:
    """Small tiles waste less work on small Gaussians; large ones need fewer lists for large Gaussians."""
    if radii.numel() == 0:
        return 8
    r = float(radii.max(dim=1).values.float().mean())
    return 4 if r < 5 else 8 if r < 24 else 16


@dataclass
class TileGrid:
    """Square tiles over a batch of images, and each tile pixel's offset from its tile's centre."""

    size: int
    cols: int
    rows: int
    n_images: int
    basis: Tensor  # (6, P): 1, u, v, u^2, uv, v^2 at the pixel centres (u, v from the tile centre)
    centre_x: Tensor  # (n_tiles,)
    centre_y: Tensor  # (n_tiles,)
    inside: Tensor  # (n_tiles, P) bool: pixel lies in the image (edge tiles overhang)

    @staticmethod
    def build(size: int, width: int, height: int, n_images: int, dtype: torch.dtype,
              device: torch.device) -> TileGrid:
        cols, rows = -(-width // size), -(-height // size)
        ar = torch.arange(size * size, device=device)
        u = (ar % size).to(dtype) + 0.5 - size / 2
        v = torch.div(ar, size, rounding_mode="floor").to(dtype) + 0.5 - size / 2
        t = torch.arange(n_images * cols * rows, device=device) % (cols * rows)
        cx = (t % cols).to(dtype) * size + size / 2
        cy = torch.div(t, cols, rounding_mode="floor").to(dtype) * size + size / 2
        inside = ((cx[:, None] + u) < width) & ((cy[:, None] + v) < height)
        basis = torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v])
        return TileGrid(size, cols, rows, n_images, basis, cx, cy, inside)

    @property
    def n_tiles(self) -> int:
        return self.n_images * self.cols * self.rows

    @property
    def n_pix(self) -> int:
        return self.size * self.size

    def to_images(self, x: Tensor, width: int, height: int) -> Tensor:
        """(n_tiles, P, C) per-tile values to (I, H, W, C) images."""
        s = self.size
        x = x.reshape(self.n_images, self.rows, self.cols, s, s, -1).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(self.n_images, self.rows * s, self.cols * s, -1)[:, :height, :width]


class Compositor:
    """Front-to-back compositing state of every tile pixel, advanced one batch of list entries at a time."""

    def __init__(self, grid: TileGrid, bins: Bins, means2d: Tensor, conics: Tensor, log_opacity: Tensor,
                 feats: Tensor):
        self.grid, self.bins = grid, bins
        self.mx, self.my = means2d.unbind(-1)
        self.ca, self.cb, self.cc = conics.unbind(-1)
        self.log_op, self.feats = log_opacity, feats
        dt, dev = means2d.dtype, means2d.device
        self.trans = grid.inside.to(dt)  # working transmittance; 0 once a pixel is done (or outside)
        self.trans_done = torch.zeros(grid.n_tiles, grid.n_pix, dtype=dt, device=dev)  # kept for done pixels
        self.acc = torch.zeros(grid.n_tiles, grid.n_pix, feats.shape[1], dtype=dt, device=dev)

    def step(self, tiles: Tensor, pos: int, batch: int) -> None:
        """Composite list entries pos .. pos + batch - 1 of `tiles` into their pixels."""
        A, B, P = len(tiles), batch, self.grid.n_pix
        slots = pos + torch.arange(B, device=tiles.device)
        valid = slots[None] < self.bins.count.index_select(0, tiles)[:, None]  # (A, B)
        g = (self.bins.offset.index_select(0, tiles)[:, None] + slots).clamp_max(len(self.bins.gid) - 1)
        g = self.bins.gid.index_select(0, g.flatten())
        ex = self.mx.index_select(0, g).view(A, B) - self.grid.centre_x.index_select(0, tiles)[:, None]
        ey = self.my.index_select(0, g).view(A, B) - self.grid.centre_y.index_select(0, tiles)[:, None]
        a, b, c = (t.index_select(0, g).view(A, B) for t in (self.ca, self.cb, self.cc))
        # sigma - log(opacity) = k . (1, u, v, u^2, uv, v^2) for pixel offsets (u, v) from the tile centre
        k0 = 0.5 * a * ex * ex + b * ex * ey + 0.5 * c * ey * ey - self.log_op.index_select(0, g).view(A, B)
        k0 = torch.where(valid, k0, torch.full_like(k0, PAD_ENERGY))
        coef = torch.stack([k0, -(a * ex + b * ey), -(b * ex + c * ey), 0.5 * a, b, 0.5 * c], -1)
        energy = (coef.view(A * B, 6) @ self.grid.basis).view(A, B, P)
        alpha = torch.clamp_max(torch.exp(-energy), ALPHA_MAX)
        alpha = torch.where(alpha >= ALPHA_THRESHOLD, alpha, torch.zeros_like(alpha))
        t_in = self.trans.index_select(0, tiles)
        t_after = t_in[:, None, :] * torch.cumprod(1.0 - alpha, dim=1)  # transmittance after each pair
        with torch.no_grad():
            keep = t_after > T_STOP
            stopped = (~keep & (alpha > 0)).any(dim=1) & (t_in > 0)
        weight = torch.where(keep, alpha * t_after / (1.0 - alpha), torch.zeros_like(alpha))
        deposit = torch.bmm(weight.transpose(1, 2), self.feats.index_select(0, g).view(A, B, -1))  # (A, P, F)
        self.acc = self.acc.index_add(0, tiles, deposit)
        t_out = t_in - deposit[..., -1]  # the last feature is 1: deposits sum the weights
        zero = torch.zeros_like(t_out)
        self.trans_done = self.trans_done.index_add(0, tiles, torch.where(stopped, t_out, zero))
        self.trans = self.trans.index_copy(0, tiles, torch.where(stopped, zero, t_out))

    def open_tiles(self, tiles: Tensor, pos: int) -> Tensor:
        """The tiles with list entries left from `pos` and pixels still open."""
        with torch.no_grad():
            more = self.bins.count.index_select(0, tiles) > pos
            more &= (self.trans.index_select(0, tiles) > 0).any(dim=1)
        return tiles[more]


def composite_autograd(comp: Compositor, active: Tensor, batch: int, min_slots: int, max_batch: int,
                       max_elements: int) -> tuple[Tensor, Tensor]:
    """Run `comp` over the `active` tiles' lists; returns the final transmittance and accumulated features."""
    bins, n_pix = comp.bins, comp.grid.n_pix
    pos = 0
    while len(active):
        B = fastpath.round_size(len(active), int(bins.count.index_select(0, active).max()) - pos, batch,
                                min_slots, max_batch)
        for part in active.split(max(1, max_elements // (B * n_pix))):
            comp.step(part, pos, B)
        pos += B
        active = comp.open_tiles(active, pos)
    return comp.trans + comp.trans_done, comp.acc


def needs_grad(projs: list[Projected], colors: list[Tensor]) -> bool:
    """Whether autograd would record the compositing (grad mode on and some input requires a gradient)."""
    if not torch.is_grad_enabled():
        return False
    return any(t.requires_grad for p in projs for t in (p.means2d, p.conics, p.depths, p.opacities)) or \
        any(c.requires_grad for c in colors)


def rasterize(projs: list[Projected], colors: list[Tensor], width: int, height: int, backgrounds: Tensor,
              tile: int | None = None, batch: int = 16, min_slots: int = 4096, max_batch: int = 256,
              max_elements: int = 1 << 22, fast: bool | None = None,
              chunk_elements: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Composite the projected Gaussians of several images (one `Projected` + (M_i, 3) colours each).

    `backgrounds` is (I, 3). Returns rgb (I, H, W, 3), alpha (I, H, W, 1) and expected depth (I, H, W, 1):
    accumulated weighted z over alpha (0 where nothing was drawn). Each round takes `batch` list entries
    per active tile, more (up to `max_batch`) once few tiles remain, and is split so that no intermediate
    holds more than `max_elements` (Gaussian, pixel) values.

    `fast` picks the inference path (`fastpath`, no gradients, same sums); None uses it whenever autograd
    would record nothing. `chunk_elements` sets that path's chunk size ((entry, pixel) pairs; None: its default)."""
    if fast is None:
        fast = not needs_grad(projs, colors)
    dev = backgrounds.device
    dt = projs[0].means2d.dtype
    n_img = len(projs)
    sizes = torch.tensor([len(p.ids) for p in projs], device=dev)
    image_ids = torch.repeat_interleave(torch.arange(n_img, device=dev), sizes)
    means2d = torch.cat([p.means2d for p in projs])
    depths = torch.cat([p.depths for p in projs])
    radii = torch.cat([p.radii for p in projs])
    # what each composited pair deposits: colour, depth and 1 (so the deposits also sum the weights)
    feats = torch.cat([torch.cat(colors), depths[:, None], torch.ones_like(depths[:, None])], 1)

    grid = TileGrid.build(tile or choose_tile(radii), width, height, n_img, dt, dev)
    conics = torch.cat([p.conics for p in projs])
    opacities = torch.cat([p.opacities for p in projs])
    bins = bin_tiles(means2d, radii, depths, image_ids, n_img, width, height, grid.size, conics, opacities)
    log_op = torch.log(opacities)
    active = (bins.count > 0).nonzero()[:, 0]
    if fast:
        chunk = {} if chunk_elements is None else {"chunk_elements": chunk_elements}
        with torch.no_grad():
            params = torch.cat([means2d, conics, log_op[:, None], feats[:, :4]], 1).index_select(0, bins.order)
            t_final, acc = fastpath.composite(active, grid.inside, bins.offset, bins.count, bins.rank,
                                              grid.centre_x, grid.centre_y, grid.basis, params, batch,
                                              min_slots, max_batch, **chunk)
    else:
        t_final, acc = composite_autograd(Compositor(grid, bins, means2d, conics, log_op, feats), active,
                                          batch, min_slots, max_batch, max_elements)
    alpha = 1.0 - t_final
    bg = backgrounds.to(dt).repeat_interleave(grid.cols * grid.rows, 0)  # per tile
    rgb = acc[..., :3] + t_final[..., None] * bg[:, None, :]
    depth = acc[..., 3] / alpha.clamp_min(1e-10)
    return (grid.to_images(rgb, width, height), grid.to_images(alpha[..., None], width, height),
            grid.to_images(depth[..., None], width, height))
