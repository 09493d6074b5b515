"""Object-level masking for C-JEPA (paper, method section: object-level latent interventions).

A mask is a boolean tensor of shape (B, T, S) with T = n_history + n_future; True means the
slot token is hidden from the predictor and becomes a prediction target.

C-JEPA's mask (`object_mask`): per sample, M slots are drawn at random; they are hidden at every
history step t >= 1, while t = 0 stays visible as the *identity anchor* (a hidden token is
queried with its own t = 0 value). Every slot is hidden at every future step. M = 0 gives the
unmasked baseline (OC-JEPA). Two ablations from the paper's "masking unit" study are here too:
`token_mask` hides random (t, s) tokens and `tube_mask` hides whole slots including t = 0.
A probe, not the paper's (`--masked-draw uniform`), draws how many slots to hide per sample,
0 .. M, so that training also sees the fully visible history that a rollout starts from.

Only slots are masked: the action and proprio nodes are handled by the predictor.
Randomness comes only from the `torch.Generator` passed in, so masks are reproducible yet
fresh for every sample and every call. Masks live on the generator's device.
"""

import torch

MASK_KINDS = ("object", "token", "tube", "none")
MASK_DRAWS = ("fixed", "uniform")   # how many slots an object mask hides: M, or 0 .. M per sample


def _check_sizes(B: int, n_history: int, n_future: int, n_slots: int) -> None:
    """Raise ValueError unless the sizes describe a non-empty (B, T, S) mask."""
    if B < 1:
        raise ValueError(f"expected batch size B >= 1, got {B}")
    if n_history < 1:
        raise ValueError(f"expected n_history >= 1 (frame 0 is the identity anchor), got {n_history}")
    if n_future < 0:
        raise ValueError(f"expected n_future >= 0, got {n_future}")
    if n_slots < 1:
        raise ValueError(f"expected n_slots >= 1, got {n_slots}")


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"expected a torch.Generator, got {type(generator).__name__}")


def _check_n_masked(n_masked: int, n_slots: int) -> None:
    if not 0 <= n_masked <= n_slots:
        raise ValueError(f"expected 0 <= n_masked <= n_slots = {n_slots}, got n_masked = {n_masked}")


def _future_hidden(B: int, n_history: int, n_future: int, n_slots: int, device: torch.device) -> torch.Tensor:
    """Mask with the whole history visible and every future slot hidden: (B, T, S) bool."""
    mask = torch.zeros(B, n_history + n_future, n_slots, dtype=torch.bool, device=device)
    mask[:, n_history:] = True
    return mask


def _random_subset(B: int, n_items: int, k, generator: torch.Generator) -> torch.Tensor:
    """For each of B samples, pick k of n_items uniformly without replacement: (B, n_items) bool.

    k is one count for every sample or a (B, 1) tensor of counts, one per sample."""
    noise = torch.rand(B, n_items, generator=generator, device=generator.device)
    rank = noise.argsort(dim=1).argsort(dim=1)  # (B, n_items): a random permutation per sample
    return rank < k


def object_mask(
    B: int, n_history: int, n_future: int, n_slots: int, n_masked: int, generator: torch.Generator,
    draw: str = "fixed",
) -> torch.Tensor:
    """C-JEPA's identity-anchored object mask.

    Returns (B, T, S) bool, T = n_history + n_future. For each sample, `n_masked` distinct slots
    are hidden at history steps 1 .. n_history - 1; step 0 is fully visible; all future slots
    are hidden. ``draw="uniform"`` (a probe, not the paper's) hides k slots instead, k drawn per
    sample uniformly from 0 .. n_masked, so some samples see the whole history as a rollout does.
    """
    _check_sizes(B, n_history, n_future, n_slots)
    _check_n_masked(n_masked, n_slots)
    _check_generator(generator)
    if draw not in MASK_DRAWS:
        raise ValueError(f"expected a masked-count draw in {MASK_DRAWS}, got {draw!r}")
    count = n_masked
    if draw == "uniform":
        count = torch.randint(0, n_masked + 1, (B, 1), generator=generator, device=generator.device)
    chosen = _random_subset(B, n_slots, count, generator)  # (B, S)
    mask = _future_hidden(B, n_history, n_future, n_slots, generator.device)
    mask[:, 1:n_history] = chosen[:, None, :]
    return mask


def token_mask(
    B: int, n_history: int, n_future: int, n_slots: int, ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """Ablation: hide individual (t, s) tokens of history steps t >= 1.

    Returns (B, T, S) bool. Exactly round(ratio * (n_history - 1) * n_slots) of those tokens
    are hidden per sample, drawn independently per sample; step 0 is visible; the future is
    hidden.
    """
    _check_sizes(B, n_history, n_future, n_slots)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"expected 0 <= ratio <= 1, got ratio = {ratio}")
    _check_generator(generator)
    n_tokens = (n_history - 1) * n_slots
    chosen = _random_subset(B, n_tokens, round(ratio * n_tokens), generator)  # (B, (T_h - 1) * S)
    mask = _future_hidden(B, n_history, n_future, n_slots, generator.device)
    mask[:, 1:n_history] = chosen.view(B, n_history - 1, n_slots)
    return mask


def tube_mask(
    B: int, n_history: int, n_future: int, n_slots: int, n_masked: int, generator: torch.Generator
) -> torch.Tensor:
    """Ablation: hide `n_masked` slots at every history step, t = 0 included (no identity anchor).

    Returns (B, T, S) bool; the future is hidden.
    """
    _check_sizes(B, n_history, n_future, n_slots)
    _check_n_masked(n_masked, n_slots)
    _check_generator(generator)
    chosen = _random_subset(B, n_slots, n_masked, generator)  # (B, S)
    mask = _future_hidden(B, n_history, n_future, n_slots, generator.device)
    mask[:, :n_history] = chosen[:, None, :]
    return mask


def make_mask(
    kind: str, B: int, n_history: int, n_future: int, n_slots: int, n_masked: int, generator: torch.Generator,
    draw: str = "fixed",
) -> torch.Tensor:
    """Build a (B, T, S) bool mask of the given kind.

    kind: "object" (C-JEPA), "token" (ratio n_masked / n_slots, the paper's same "masking unit"),
    "tube", or "none" (history visible, future hidden; requires n_masked = 0). ``draw`` is
    object_mask's; the other kinds take only "fixed".
    """
    if kind == "object":
        return object_mask(B, n_history, n_future, n_slots, n_masked, generator, draw)
    if draw != "fixed":
        raise ValueError(f"a masked-count draw {draw!r} applies to object masks only, got kind {kind!r}")
    if kind == "tube":
        return tube_mask(B, n_history, n_future, n_slots, n_masked, generator)
    if kind == "token":
        _check_n_masked(n_masked, n_slots)
        return token_mask(B, n_history, n_future, n_slots, n_masked / n_slots, generator)
    if kind == "none":
        _check_sizes(B, n_history, n_future, n_slots)
        if n_masked != 0:
            raise ValueError(f"mask kind 'none' hides no history slot, expected n_masked = 0, got {n_masked}")
        _check_generator(generator)
        return _future_hidden(B, n_history, n_future, n_slots, generator.device)
    raise ValueError(f"expected mask kind in {MASK_KINDS}, got {kind!r}")
