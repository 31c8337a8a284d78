"""The rasteriser's inference path: the same front-to-back compositing as `rasterizer.Compositor`, for when
nothing needs a gradient (animation, previews, evaluation), written for speed on the CPU.

Why it is faster than the autograd path, with the same sums:

- Only the active tiles are kept, as rows updated in place (autograd needs a fresh copy of the whole state
  every step); a tile is written out once, as soon as its list ends or all of its pixels have stopped.
- Every (entry, pixel) value goes through one short chain of in-place operations on reused buffers: log
  alpha from one matrix product, clamp, exp, threshold, cumulative product of 1 - alpha, and the weights
  alpha / (1 - alpha) * T_after. Setting T to 0 from a pixel's stopping entry on (one `threshold`) zeroes
  its later weights without any per-pixel bookkeeping.
- What an entry needs of its Gaussian sits in one 64-byte row of a table in depth order, so the gather of
  a round touches one cache line per entry, mostly near the previous round's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.render.projection import ALPHA_THRESHOLD

T_STOP = 1e-4  # the same stopping rule as the autograd path (`rasterizer.T_STOP`)
LOG_ALPHA_MAX = math.log(0.999)  # alpha is capped at 0.999
LOG_ALPHA_MIN = -30.0  # far below log(1/255); clamping first keeps exp() off its slow underflow path
PAD_LOG_OPACITY = -1e4  # the padding Gaussian's log opacity: its alpha is always below the threshold


def below(x: float, dtype: torch.dtype) -> float:
    """The largest `dtype` value below `x`, so that `v > below(x)` is exactly `v >= x` (as gsplat tests it)."""
    t = torch.tensor(x, dtype=dtype)
    return float(torch.nextafter(t, torch.zeros_like(t)))


# columns of the per-Gaussian table gathered for every list entry; 0-2 receive the entry's own coefficients
K0, K1, K2, HALF_NEG_A, NEG_B, HALF_NEG_C, MX, MY, LOG_OP, FEATS = range(10)
TABLE_WIDTH = 16  # 64-byte rows: one cache line per gathered list entry


def gaussian_table(params: Tensor) -> Tensor:
    """`params` (M, 6 + F): mean x, mean y, conic a, b, c, log opacity, features. Returns (M + 1, 16) rows:
    coefficient slots, -a/2, -b, -c/2, mean x, mean y, log opacity, the F features and a 1 (so that the
    deposits also sum the weights); the last row is padding whose alpha is 0 everywhere."""
    n_feats = params.shape[1] - 6
    if FEATS + n_feats + 1 > TABLE_WIDTH:
        raise ValueError(f"at most {TABLE_WIDTH - FEATS - 1} features per Gaussian, got {n_feats}")
    a, b, c = params[:, 2], params[:, 3], params[:, 4]
    table = torch.zeros(len(params) + 1, TABLE_WIDTH, dtype=params.dtype, device=params.device)
    table[:-1, HALF_NEG_A], table[:-1, NEG_B], table[:-1, HALF_NEG_C] = -0.5 * a, -b, -0.5 * c
    table[:-1, MX], table[:-1, MY], table[:-1, LOG_OP] = params[:, 0], params[:, 1], params[:, 5]
    table[:-1, FEATS:FEATS + n_feats] = params[:, 6:]
    table[:-1, FEATS + n_feats] = 1.0
    table[-1, LOG_OP] = PAD_LOG_OPACITY
    return table


class ActiveTiles:
    """Compositing state of the tiles still in play, one row per tile. Finished tiles are written out at
    once but their rows are only dropped (a copy of all the state) once a good share of them has finished."""

    def __init__(self, tiles: Tensor, inside: Tensor, offset: Tensor, count: Tensor, centre_x: Tensor,
                 centre_y: Tensor, n_acc: int):
        self.tiles = tiles
        self.trans = inside.index_select(0, tiles).to(centre_x.dtype)  # working T; 0 once a pixel stopped
        self.acc = torch.zeros(len(tiles), n_acc, inside.shape[1], dtype=centre_x.dtype, device=tiles.device)
        self.offset, self.count = offset.index_select(0, tiles), count.index_select(0, tiles)
        self.cx, self.cy = centre_x.index_select(0, tiles), centre_y.index_select(0, tiles)
        self.n_done = 0  # finished rows not yet dropped (their count is 0: all their slots are padding)

    def __len__(self) -> int:
        return len(self.tiles)

    def retire(self, pos: int, out_trans: Tensor, out_acc: Tensor, drop_share: float = 1 / 16) -> None:
        """Write out the tiles whose lists end at `pos` or whose pixels have all stopped; drop finished rows
        once they are `drop_share` of all rows."""
        live = (self.count > pos) & (self.trans > 0).any(dim=1)
        fresh = (~live & (self.count > 0)).nonzero()[:, 0]
        if len(fresh):
            t = self.tiles.index_select(0, fresh)
            out_trans.index_copy_(0, t, self.trans.index_select(0, fresh))
            out_acc.index_copy_(0, t, self.acc.index_select(0, fresh))
            self.count.index_fill_(0, fresh, 0)
            self.trans.index_fill_(0, fresh, 0.0)
            self.n_done += len(fresh)
        if self.n_done and self.n_done >= drop_share * len(self):
            keep = live.nonzero()[:, 0]
            for name in ("tiles", "trans", "acc", "offset", "count", "cx", "cy"):
                setattr(self, name, getattr(self, name).index_select(0, keep))
            self.n_done = 0


class Buffers:
    """Scratch memory for the rounds, allocated once per image batch: fresh large tensors in every round
    would each cost page faults (the CPU allocator returns big blocks to the system)."""

    def __init__(self, max_pairs: int, max_entries: int, table: Tensor, rank: Tensor):
        dt, dev = table.dtype, table.device
        self.alpha = torch.empty(max_pairs, dtype=dt, device=dev)
        self.trans = torch.empty(2 * max_pairs, dtype=dt, device=dev)  # B + 1 values per B
        self.entries = torch.empty(max_entries, table.shape[1], dtype=dt, device=dev)
        self.ranks = torch.empty(max_entries, dtype=rank.dtype, device=dev)


def composite_rows(st: ActiveTiles, rows: slice, pos: int, batch: int, rank: Tensor, table: Tensor,
                   basis: Tensor, threshold: float, n_feats: int, buf: Buffers) -> None:
    """Composite list entries pos .. pos + batch - 1 of the tiles in `rows` into their pixels, in place.

    `rank` (the lists) ends with one extra entry pointing at the padding row of `table` (`gaussian_table`);
    `basis` (6, P) holds the monomials 1, u, v, u², uv, v² of the pixels' offsets from their tile's centre.
    A pixel that stops gets T = 0 from the stopping entry on, so its weights vanish by themselves; its true
    final T is recovered at the end from the summed weights (`composite`)."""
    count, offset, trans = st.count[rows], st.offset[rows], st.trans[rows]
    A, B, P = len(count), batch, basis.shape[1]
    slots = torch.arange(pos, pos + B, device=count.device)
    idx = torch.where(slots < count[:, None], offset[:, None] + slots, len(rank) - 1)
    ranks = torch.index_select(rank, 0, idx.view(-1), out=buf.ranks[: A * B])
    e = torch.index_select(table, 0, ranks, out=buf.entries[: A * B]).view(A, B, -1)
    # log alpha = log(opacity) - sigma is a quadratic polynomial in the pixel offset (u, v) from the tile
    # centre; its coefficients (k0, k1, k2, -a/2, -b, -c/2) are written into columns 0-5 of the entry rows
    ex, ey = e[..., MX] - st.cx[rows, None], e[..., MY] - st.cy[rows, None]
    k1 = torch.mul(e[..., NEG_B], ey, out=e[..., K1]).addcmul_(e[..., HALF_NEG_A], ex, value=2.0).neg_()
    k2 = torch.mul(e[..., NEG_B], ex, out=e[..., K2]).addcmul_(e[..., HALF_NEG_C], ey, value=2.0).neg_()
    torch.add(e[..., LOG_OP], ex.mul_(k1).addcmul_(ey, k2), alpha=-0.5, out=e[..., K0])
    alpha = torch.mm(e.view(A * B, -1)[:, :6], basis, out=buf.alpha[: A * B * P].view(A * B, P)).view(A, B, P)
    alpha.clamp_(LOG_ALPHA_MIN, LOG_ALPHA_MAX).exp_()
    F.threshold_(alpha, threshold, 0.0)  # alphas below 1/255 are skipped
    ts = buf.trans[: A * (B + 1) * P].view(A, B + 1, P)  # T before entry 0, then after each entry
    ts[:, 0] = trans
    t_after = torch.sub(1.0, alpha, out=ts[:, 1:])
    weight = alpha.div_(t_after)  # alpha / (1 - alpha): times T after the entry, it is alpha * T before it
    ts.cumprod_(1)
    F.threshold_(t_after, T_STOP, 0.0)  # the entry that brings T to T_STOP or below, and all after it: T = 0
    weight.mul_(t_after)
    st.acc[rows].baddbmm_(e[..., FEATS:FEATS + n_feats + 1].transpose(1, 2), weight)  # (A, F+1, B) @ (A, B, P)
    trans.copy_(ts[:, -1])


def round_size(n_tiles: int, longest: int, batch: int, min_slots: int, max_batch: int) -> int:
    """List entries per tile in the next round over `n_tiles` open tiles whose longest remaining list has
    `longest` entries: `batch`, more once few tiles remain (so late rounds over a few deep tiles stay cheap),
    and no more than the longest list needs. Both compositing paths use it."""
    B = batch
    if n_tiles * batch < min_slots:  # largest power of two with n_tiles * B <= min_slots
        B = min(max_batch, max(batch, 1 << ((min_slots // n_tiles).bit_length() - 1)))
    return min(B, 1 << (longest - 1).bit_length())


def composite(tiles: Tensor, inside: Tensor, offset: Tensor, count: Tensor, rank: Tensor, centre_x: Tensor,
              centre_y: Tensor, basis: Tensor, params: Tensor, batch: int = 16, min_slots: int = 4096,
              max_batch: int = 256, chunk_elements: int = 1 << 19) -> tuple[Tensor, Tensor]:
    """Composite the tile lists (`rank[offset[t]:offset[t] + count[t]]`, front to back) of every tile.

    `tiles` are the tiles with non-empty lists, `inside` (n_tiles, P) marks pixels inside the image, `params`
    (M, 6 + F) holds mean x, mean y, conic a, b, c, log opacity and the F features that each composited pair
    deposits, for the Gaussians that `rank` indexes. Returns the final transmittance (n_tiles, P) and the
    accumulated features (n_tiles, P, F). Round sizes follow the autograd path: `batch` entries per tile,
    more once few tiles remain; each round is cut into chunks of about `chunk_elements` (entry, pixel) pairs."""
    dt, dev = params.dtype, params.device
    n_feats = params.shape[1] - 6
    table = gaussian_table(params)
    rank = torch.cat([rank, torch.tensor([len(params)], dtype=rank.dtype, device=dev)])
    threshold = below(ALPHA_THRESHOLD, dt)
    in_f = inside.to(dt)
    out_trans = in_f.clone()  # tiles without entries keep T = 1; the others are written as they finish
    out_acc = torch.zeros(len(inside), n_feats + 1, inside.shape[1], dtype=dt, device=dev)
    st = ActiveTiles(tiles, inside, offset, count, centre_x, centre_y, n_feats + 1)
    P = inside.shape[1]
    buf = Buffers(max(chunk_elements, max_batch * P), max(chunk_elements // P, max_batch), table, rank)
    pos = 0
    while len(st) > st.n_done:
        B = round_size(len(st) - st.n_done, int(st.count.max()) - pos, batch, min_slots, max_batch)
        rows = max(1, chunk_elements // (B * P))
        for r0 in range(0, len(st), rows):
            composite_rows(st, slice(r0, r0 + rows), pos, B, rank, table, basis, threshold, n_feats, buf)
        pos += B
        st.retire(pos, out_trans, out_acc)
    # stopped pixels were left at T = 0; their T is 1 minus the weights composited before they stopped
    out_trans = torch.where(out_trans > 0, out_trans, in_f - out_acc[:, n_feats])
    return out_trans, out_acc[:, :n_feats].transpose(1, 2)
