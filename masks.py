"""What slot attention's masks say: each pixel's slot, the segmentation scores FG-ARI and
mBO (FACTS section 6), and two descriptions of a slot's mask that are ours: its spread in
place (``--position-weight``) and its moments (``--mask-moments``).

Masks are (..., S, h, w), summing to 1 over the slot axis S; ground truth and predictions are
integer id maps. FG-ARI is the adjusted Rand index over foreground pixels (1 when degenerate);
mBO the mean over ground-truth objects of the best IoU with any predicted mask. Video variants
score (T, H, W) as one set, so a slot that changes objects is penalised.
"""

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange


def position_grid(h, w, device=None):
    """(h, w, 4) grid of [x, y, 1 - x, 1 - y] with x, y in [0, 1] across the image."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h, device=device), torch.linspace(0, 1, w, device=device), indexing="ij")
    return torch.stack([x, y, 1 - x, 1 - y], dim=-1)


def mask_spread(masks, weight):
    """How far each slot's pixels lie from their centre, the position half of a soft k-means
    (ours, not in the paper or in slot attention; ``--position-weight`` in train.py).

    masks (B, T, S, h, w) (summing to 1 over S), weight (B, T, h, w) >= 0 -> a scalar: the
    mean over frames and pixels of sum_k weight_p masks_kp |x_p - c_k|^2, where x_p is pixel
    p's place in [-1, 1]^2 and c_k slot k's weighted centre sum_p weight_p masks_kp x_p /
    sum_p weight_p masks_kp. Colour alone cannot tell two objects of one colour apart (one
    slot painting both reconstructs them as well as two slots do); this term is lower when
    they sit in two slots, each near its own centre. With ``weight`` the pixel's distance
    from the background colour, the background slot spreading over the frame costs nothing.
    """
    h, w = masks.shape[-2:]
    place = position_grid(h, w, masks.device)[..., :2].permute(2, 0, 1) * 2 - 1  # (2, h, w): x, y
    mass = masks * weight[:, :, None]  # (B, T, S, h, w)
    total = mass.sum(dim=(-2, -1))  # (B, T, S)
    first = torch.einsum("btshw,chw->btsc", mass, place)  # sum of weighted places
    second = torch.einsum("btshw,hw->bts", mass, place.square().sum(0))
    spread = second - first.square().sum(-1) / total.clamp_min(1e-6)  # sum_p m |x_p - c|^2 per slot
    return spread.sum(dim=2).mean() / (h * w)


N_MOMENTS = 10


def mask_moments(attn):
    """Where each slot's pixels are and how they lie: ten numbers a slot (ours, not in the
    paper; ``--mask-moments`` in train.py).

    attn (..., S, N) slot attention over a square grid of N cells -> (..., S, 10). Each cell
    goes to the slot that attends to it most (hard masks: soft attention leaks a little of
    every slot over the thousands of background cells, which swamps a small object's
    moments). Per slot: its share of the cells; its centre (x, y) in [-1, 1]; its second
    central moments (xx, xy, yy) over their trace; its third central moments (xxx, xxy, xyy,
    yyy) over the trace to the power 1.5. The last seven do not change with the object's size
    and read its turn: the Push-T block's angle is in them, and barely in the slot vectors.
    A slot with no cell gets zeros.
    """
    n = attn.shape[-1]
    side = round(n ** 0.5)
    if side * side != n:
        raise ValueError(f"expected attention over a square grid, got {n} cells")
    place = position_grid(side, side, attn.device)[..., :2].reshape(n, 2) * 2 - 1  # (N, 2): x, y
    hard = F.one_hot(attn.argmax(dim=-2), attn.shape[-2]).movedim(-1, -2).to(place.dtype)  # (..., S, N)
    count = hard.sum(-1)  # (..., S)
    share = hard / count.clamp_min(1)[..., None]
    centre = share @ place  # (..., S, 2)
    dx = place[:, 0] - centre[..., :1]  # (..., S, N)
    dy = place[:, 1] - centre[..., 1:]
    second = [(share * a * b).sum(-1) for a, b in ((dx, dx), (dx, dy), (dy, dy))]
    third = [(share * a * b * c).sum(-1) for a, b, c in ((dx, dx, dx), (dx, dx, dy), (dx, dy, dy), (dy, dy, dy))]
    trace = (second[0] + second[2]).clamp_min(1e-8)
    return torch.stack([count / n, centre[..., 0], centre[..., 1], *(m / trace for m in second),
                        *(m / trace**1.5 for m in third)], dim=-1)


def masks_to_segmentation(masks, size=None):
    """Soft masks (B, T, S, h, w) -> segment ids (B, T, H, W): argmax over slots.

    With size=(H, W) the masks are first upsampled bilinearly (e.g. DINOv2 patch masks to pixels).
    """
    if masks.ndim != 5:
        raise ValueError(f"expected masks of shape (B, T, S, H, W), got {tuple(masks.shape)}")
    if size is not None and tuple(size) != tuple(masks.shape[-2:]):
        flat = F.interpolate(rearrange(masks, "b t s h w -> (b t) s h w"), size=tuple(size), mode="bilinear")
        masks = rearrange(flat, "(b t) s h w -> b t s h w", b=masks.shape[0])
    return masks.argmax(dim=2)


def _contingency(true_ids, pred_ids):
    """Flattened id arrays (P,) -> (table (n_true, n_pred) of pixel counts, sorted true ids)."""
    true_values, true_idx = np.unique(true_ids, return_inverse=True)
    pred_values, pred_idx = np.unique(pred_ids, return_inverse=True)
    n_pred = len(pred_values)
    table = np.bincount(true_idx * n_pred + pred_idx, minlength=len(true_values) * n_pred)
    return table.reshape(len(true_values), n_pred).astype(np.float64), true_values


def _as_flat_pair(true_ids, pred_ids):
    true_ids, pred_ids = np.asarray(true_ids), np.asarray(pred_ids)
    if true_ids.shape != pred_ids.shape:
        raise ValueError(f"expected true and predicted ids of one shape, got {true_ids.shape} and {pred_ids.shape}")
    return true_ids.ravel(), pred_ids.ravel()


def _pairs(counts):
    """Number of unordered pixel pairs within each count: n (n - 1) / 2."""
    return counts * (counts - 1) / 2


def fg_ari(true_ids, pred_ids, background_ids=(0,)):
    """Adjusted Rand index over foreground pixels (true id not in background_ids).

    Ids of any shape: (H, W) for one frame, (T, H, W) for a video taken as one set (an
    object whose predicted id changes over time then counts as split). Returns 1.0 when the
    index is degenerate (e.g. one true and one predicted segment) and nan without foreground.
    """
    true_ids, pred_ids = _as_flat_pair(true_ids, pred_ids)
    fg = ~np.isin(true_ids, background_ids)
    if not fg.any():
        return float("nan")
    table, _ = _contingency(true_ids[fg], pred_ids[fg])
    index = _pairs(table).sum()
    true_pairs, pred_pairs, all_pairs = _pairs(table.sum(1)).sum(), _pairs(table.sum(0)).sum(), _pairs(table.sum())
    expected = true_pairs * pred_pairs / all_pairs if all_pairs > 0 else 0.0
    maximum = (true_pairs + pred_pairs) / 2
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def mbo(true_ids, pred_ids, background_ids=(0,)):
    """Mean best overlap: mean over true foreground objects of the best IoU with any predicted segment.

    Ids of any shape, as in `fg_ari`; predicted segments include the one covering the
    background. Returns nan when there is no foreground object.
    """
    true_ids, pred_ids = _as_flat_pair(true_ids, pred_ids)
    table, true_values = _contingency(true_ids, pred_ids)  # intersections (n_true, n_pred)
    union = table.sum(1, keepdims=True) + table.sum(0, keepdims=True) - table
    best = (table / union).max(axis=1)  # (n_true,)
    fg = ~np.isin(true_values, background_ids)
    return float(best[fg].mean()) if fg.any() else float("nan")
