"""Tests for masking.py: counts, identity anchor, hidden future, per-sample randomness, determinism."""

import pytest
import torch

from masking import make_mask, object_mask, token_mask, tube_mask

B, N_HISTORY, N_FUTURE, N_SLOTS = 64, 4, 2, 5


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n_masked", [0, 1, 3, N_SLOTS])
def test_object_mask_counts_anchor_and_future(n_masked):
    mask = object_mask(B, N_HISTORY, N_FUTURE, N_SLOTS, n_masked, gen())
    assert mask.shape == (B, N_HISTORY + N_FUTURE, N_SLOTS) and mask.dtype == torch.bool
    assert not mask[:, 0].any()  # identity anchor visible
    assert (mask[:, 1:N_HISTORY].sum(-1) == n_masked).all()  # exactly M per sample per step
    assert (mask[:, 1:N_HISTORY] == mask[:, 1:2]).all()  # the same objects at every history step
    assert mask[:, N_HISTORY:].all()  # future hidden


def test_object_mask_differs_across_samples_and_calls_and_is_reproducible():
    g = gen(3)
    first = object_mask(B, N_HISTORY, N_FUTURE, N_SLOTS, 1, g)
    second = object_mask(B, N_HISTORY, N_FUTURE, N_SLOTS, 1, g)
    chosen = first[:, 1].int().argmax(-1)  # (B,) masked slot index of each sample
    assert len(chosen.unique()) == N_SLOTS  # every slot index is masked in some sample
    assert not torch.equal(first, second)  # a fresh draw at every call
    g = gen(3)
    assert torch.equal(first, object_mask(B, N_HISTORY, N_FUTURE, N_SLOTS, 1, g))
    assert torch.equal(second, object_mask(B, N_HISTORY, N_FUTURE, N_SLOTS, 1, g))


def test_uniform_draw_hides_every_count_from_zero_to_m():
    # the masked_draw probe: k in 0 .. M hidden slots per sample, anchor and future as C-JEPA's
    mask = object_mask(4000, N_HISTORY, N_FUTURE, N_SLOTS, 3, gen(), draw="uniform")
    counts = mask[:, 1].sum(-1)
    assert torch.equal(counts.unique(), torch.arange(4))  # 0, 1, 2 and 3 all occur, never 4
    assert (torch.bincount(counts) > 900).all()  # about 1,000 each
    assert (mask[:, 1:N_HISTORY] == mask[:, 1:2]).all() and not mask[:, 0].any() and mask[:, N_HISTORY:].all()
    assert torch.equal(mask, make_mask("object", 4000, N_HISTORY, N_FUTURE, N_SLOTS, 3, gen(), "uniform"))
    # "fixed" is the paper's mask, drawn from the same stream as before the probe existed
    assert torch.equal(object_mask(B, N_HISTORY, N_FUTURE, N_SLOTS, 2, gen(), draw="fixed"),
                       object_mask(B, N_HISTORY, N_FUTURE, N_SLOTS, 2, gen()))


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 1.0])
def test_token_mask_count_is_exact(ratio):
    mask = token_mask(B, N_HISTORY, N_FUTURE, N_SLOTS, ratio, gen())
    expected = round(ratio * (N_HISTORY - 1) * N_SLOTS)
    assert (mask[:, 1:N_HISTORY].sum((1, 2)) == expected).all()
    assert not mask[:, 0].any()
    assert mask[:, N_HISTORY:].all()
    if 0 < expected < (N_HISTORY - 1) * N_SLOTS:
        assert not (mask[:, 1:N_HISTORY] == mask[:1, 1:N_HISTORY]).all()  # differs across samples


def test_tube_mask_hides_anchor_too():
    mask = tube_mask(B, N_HISTORY, N_FUTURE, N_SLOTS, 2, gen())
    assert (mask[:, :N_HISTORY].sum(-1) == 2).all()
    assert (mask[:, :N_HISTORY] == mask[:, :1]).all()  # the same slots from t = 0 on
    assert mask[:, N_HISTORY:].all()


def test_make_mask_dispatch():
    kinds = {"object": object_mask, "tube": tube_mask}
    for kind, fn in kinds.items():
        assert torch.equal(make_mask(kind, B, N_HISTORY, N_FUTURE, N_SLOTS, 2, gen()),
                           fn(B, N_HISTORY, N_FUTURE, N_SLOTS, 2, gen()))
    assert torch.equal(make_mask("token", B, N_HISTORY, N_FUTURE, N_SLOTS, 2, gen()),
                       token_mask(B, N_HISTORY, N_FUTURE, N_SLOTS, 2 / N_SLOTS, gen()))
    none = make_mask("none", B, N_HISTORY, N_FUTURE, N_SLOTS, 0, gen())
    assert not none[:, :N_HISTORY].any() and none[:, N_HISTORY:].all()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_mask("patch", B, 3, 1, 4, 1, gen()), "mask kind"),
        (lambda: make_mask("none", B, 3, 1, 4, 1, gen()), "n_masked = 0"),
        (lambda: object_mask(B, 3, 1, 4, 5, gen()), "n_masked <= n_slots"),
        (lambda: tube_mask(B, 3, 1, 4, -1, gen()), "n_masked <= n_slots"),
        (lambda: token_mask(B, 3, 1, 4, 1.5, gen()), "ratio"),
        (lambda: object_mask(B, 0, 1, 4, 1, gen()), "n_history >= 1"),
        (lambda: object_mask(B, 3, -1, 4, 1, gen()), "n_future >= 0"),
        (lambda: object_mask(0, 3, 1, 4, 1, gen()), "B >= 1"),
        (lambda: object_mask(B, 3, 1, 4, 1, gen(), draw="some"), "masked-count draw"),
        (lambda: make_mask("tube", B, 3, 1, 4, 1, gen(), "uniform"), "object masks only"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_generator_is_required():
    with pytest.raises(TypeError, match="torch.Generator"):
        object_mask(B, 3, 1, 4, 1, 0)
