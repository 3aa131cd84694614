"""Layer-wise reconstruction: prune a weight matrix and re-fit what is left (SparseGPT / OBS).

For a layer ``y = W x`` with calibration inputs ``X``, removing weights changes the output
by ``ΔW X``; the optimal brain surgeon (OBS) removes the weight of least saliency
``w² / [H⁻¹]_jj²`` (``H = X Xᵀ``) and moves the rest of its row by ``-w / [H⁻¹]_jj ·
H⁻¹_{j,:}`` to cancel the error. SparseGPT makes that affordable: columns are processed
left to right in blocks, the mask of a block is chosen from saliencies at the block's
start, and the inverse Hessian is kept as the upper Cholesky factor of ``H⁻¹``, so each
column's update is one rank-1 step.

:class:`LayerSolver` factors ``H`` once per layer and then prunes to any count of weights
(``prune(k)``), which is what a level database needs: one factorisation, many levels.
Counts are exact to the weight: ``k`` is spread over column blocks in proportion to their
width, and within a block either every row loses the same number (``groups="row"``, the
rest to the rows whose next weight matters least, as the masks of
:class:`~prunetune.pruning.masks.ScoreOrder` do) or the block's least salient weights go
(``"layer"``). ``pattern=(n, m)`` prunes ``m - n`` of every ``m`` consecutive inputs of
each row instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

Groups = Literal["row", "layer"]


@dataclass(frozen=True)
class SparseGPTConfig:
    """Settings of the solver.

    Attributes:
        damping: added to the Hessian's diagonal as a fraction of its mean diagonal
            (regularises ill-conditioned inputs; SparseGPT's default 0.01).
        block_size: columns whose masks are chosen together (128 in SparseGPT).
        groups: ``"row"`` (every row loses the same number of weights in each block) or
            ``"layer"`` (the block's least salient weights, whichever rows they are in).
    """

    damping: float = 0.01
    block_size: int = 128
    groups: Groups = "row"

    def __post_init__(self) -> None:
        if not 0.0 < self.damping <= 10.0:
            raise ValueError(f"damping must be in (0, 10] (a fraction of the mean Hessian diagonal); got {self.damping}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1 column; got {self.block_size}")
        if self.groups not in ("row", "layer"):
            raise ValueError(f"groups must be 'row' or 'layer'; got {self.groups!r}")


def _inverse_factor(gram: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upper Cholesky factor of ``(H + λI)⁻¹``, the diagonal of that inverse, and which
    inputs were never active (their weights can be removed at no cost)."""
    h = gram.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    mean_diag = float(torch.diag(h).mean())
    for attempt in range(6):  # a rank-deficient H needs more damping; grow it tenfold
        damped = h + torch.eye(len(h), dtype=h.dtype, device=h.device) * damping * mean_diag * 10**attempt
        chol, info = torch.linalg.cholesky_ex(damped)
        if int(info) == 0:
            inverse = torch.cholesky_inverse(chol)
            upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
            if int(info) == 0:
                return upper.float(), torch.diag(inverse).float(), dead
    raise ValueError("the layer's input Hessian is not positive definite even with 10^5 x damping")


def _spread(k: int, widths: list[int]) -> list[int]:
    """Split ``k`` over blocks in proportion to their widths, exactly (cumulative rounding)."""
    total, out, done, cut = sum(widths), [], 0, 0
    for w in widths:
        done += w
        nxt = round(k * done / total)
        out.append(nxt - cut)
        cut = nxt
    return out


def _block_mask(saliency: torch.Tensor, k: int, groups: Groups) -> torch.Tensor:
    """Boolean mask (True = prune) of exactly ``k`` entries of ``saliency`` (rows, width)."""
    rows = saliency.shape[0]
    mask = torch.zeros_like(saliency, dtype=torch.bool)
    if k == 0:
        return mask
    if groups == "layer":
        flat = torch.sort(saliency.reshape(-1), stable=True).indices[:k]
        mask.view(-1)[flat] = True
        return mask
    base, extra = divmod(k, rows)
    ordered, order = torch.sort(saliency, dim=1, stable=True)
    if base:
        mask.scatter_(1, order[:, :base], True)
    if extra:
        chosen = torch.topk(ordered[:, base], extra, largest=False, sorted=False).indices
        mask[chosen, order[chosen, base]] = True
    return mask


class LayerSolver:
    """One layer's SparseGPT: ``H`` factored once, then ``prune(k)`` for any count.

    Args:
        weight: the dense ``(out, in)`` weight (not modified).
        gram: ``Σ x xᵀ`` over the layer's calibration inputs, ``(in, in)``.
        config: damping, block size, comparison groups.
    """

    def __init__(self, weight: torch.Tensor, gram: torch.Tensor, config: SparseGPTConfig | None = None) -> None:
        if weight.dim() != 2 or gram.shape != (weight.shape[1], weight.shape[1]):
            raise ValueError(f"gram must be (in, in) = {(weight.shape[1],) * 2} for a weight of shape "
                             f"{tuple(weight.shape)}; got {tuple(gram.shape)}")
        self.config = config or SparseGPTConfig()
        self.dense = weight.detach().float().to(gram.device)
        self.factor, self.inverse_diag, self.dead = _inverse_factor(gram, self.config.damping)
        self.rows, self.cols = self.dense.shape

    def prune(self, k: int, pattern: tuple[int, int] | None = None) -> torch.Tensor:
        """The reconstructed ``(out, in)`` weight with exactly ``k`` weights pruned (zero),
        or with the N:M ``pattern`` (``k`` ignored)."""
        return self.prune_many([k], pattern)[0]

    def prune_many(
        self, ks: Sequence[int], pattern: tuple[int, int] | None = None, max_bytes: int = 1 << 30
    ) -> list[torch.Tensor]:
        """``prune(k)`` for every ``k`` of ``ks``, solved together: rows are independent
        under the update, so the levels are stacked as more rows and share one pass over
        the columns (``max_bytes`` bounds the stack; more levels go in several passes)."""
        for k in ks:
            if pattern is None and not 0 <= k <= self.rows * self.cols:
                raise ValueError(f"k must be in [0, {self.rows * self.cols}]; got {k}")
        per_pass = max(1, max_bytes // (self.rows * self.cols * 4))
        out: list[torch.Tensor] = []
        for at in range(0, len(ks), per_pass):
            stacked = self._solve(list(ks[at : at + per_pass]), pattern)
            out.extend(stacked.split(self.rows))
        return out

    def _solve(self, ks: list[int], pattern: tuple[int, int] | None) -> torch.Tensor:
        rows, levels = self.rows, len(ks)
        w = self.dense.repeat(levels, 1)
        if pattern is None and not any(ks):
            return w
        u, bs = self.factor, self.config.block_size
        starts = list(range(0, self.cols, bs))
        widths = [min(bs, self.cols - s) for s in starts]
        per_block = [_spread(k, widths) for k in ks] if pattern is None else []
        for b, i1 in enumerate(starts):
            i2 = min(i1 + bs, self.cols)
            w1 = w[:, i1:i2].clone()
            u1 = u[i1:i2, i1:i2]
            d = torch.diag(u1)
            err = torch.zeros_like(w1)
            if pattern is None:
                salience = w1 ** 2 / d[None, :] ** 2
                salience[:, self.dead[i1:i2]] = 0.0
                mask = torch.cat([_block_mask(salience[j * rows : (j + 1) * rows], per_block[j][b],
                                              self.config.groups) for j in range(levels)])
            else:
                mask = torch.zeros_like(w1, dtype=torch.bool)
            for i in range(i2 - i1):
                if pattern is not None and i % pattern[1] == 0:
                    n, m = pattern
                    part = w1[:, i : i + m] ** 2 / d[None, i : i + m] ** 2
                    drop = torch.topk(part, m - n, dim=1, largest=False).indices
                    mask[:, i : i + m].scatter_(1, drop, True)
                col = w1[:, i]
                q = torch.where(mask[:, i], torch.zeros_like(col), col)
                e = (col - q) / d[i]
                w1[:, i:] -= e[:, None] * u1[i, i:][None, :]
                w1[:, i] = q  # exactly zero where pruned, after the update's rounding
                err[:, i] = e
            w[:, i1:i2] = w1
            w[:, i2:] -= err @ u[i1:i2, i2:]
        return w

    def saliency(self, weight: torch.Tensor) -> torch.Tensor:
        """OBS saliency ``w² / [H⁻¹]_jj`` of each weight of ``weight`` (the loss increase
        of removing it alone); what ranks the weights a level removes beyond its grid count."""
        return weight.float() ** 2 / self.inverse_diag[None, :]

