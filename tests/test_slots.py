"""Tests for slots.py: slot attention invariants, decoders, the video encoder, metrics, loading."""

import contextlib
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from files import load_official_slots
from masks import fg_ari, mask_moments, mask_spread, masks_to_segmentation, mbo
from dinov2 import normalize_imagenet
from slots import AttentionDecoder, BroadcastDecoder, SlotAttention, SlotEncoder
from videosaur import FeatureDecoder, SlotMixerDecoder, time_similarity


def tiny_encoder(**kwargs):
    """A 16 px CNN slot encoder small enough to train for a few steps in a test."""
    config = dict(backbone="cnn", image_size=16, n_slots=3, slot_dim=32, input_dim=32, cnn_channels=16)
    return SlotEncoder(**(config | dict(decoder_channels=16) | kwargs))


def squares(batch, time, generator, with_ids=False):
    """Frames (B, T, 3, 16, 16): two coloured 6 x 6 squares on black, moving one pixel per frame;
    with_ids also returns their ids (B, T, 16, 16): 0 background, 1 and 2 the squares (2 on top)."""
    frames, ids = torch.zeros(batch, time, 3, 16, 16), torch.zeros(batch, time, 16, 16, dtype=torch.long)
    colours = torch.rand(batch, 2, 3, generator=generator)
    corners = torch.randint(0, 16 - 6 - time, (batch, 2, 2), generator=generator)
    for b in range(batch):
        for k in range(2):
            for t in range(time):
                y, x = corners[b, k] + t
                frames[b, t, :, y : y + 6, x : x + 6] = colours[b, k, :, None, None]
                ids[b, t, y : y + 6, x : x + 6] = k + 1
    return (frames, ids) if with_ids else frames


@contextlib.contextmanager
def one_thread():
    """Run on one thread: tiny models gain nothing from more, and stall when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_slot_attention_is_permutation_equivariant_over_slots():
    g = torch.Generator().manual_seed(0)
    attention = SlotAttention(dim=16, n_slots=4, n_iters=3, input_dim=8, hidden_dim=32)
    inputs, slots = torch.randn(2, 10, 8, generator=g), torch.randn(2, 4, 16, generator=g)
    perm = torch.tensor([2, 0, 3, 1])
    out, attn = attention(inputs, slots)
    out_perm, attn_perm = attention(inputs, slots[:, perm])
    torch.testing.assert_close(out_perm, out[:, perm])
    torch.testing.assert_close(attn_perm, attn[:, perm])
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(2, 10))  # softmax over slots
    with pytest.raises(ValueError, match=r"expected inputs of shape \(B, N, 8\), got \(2, 10, 9\)"):
        attention(torch.zeros(2, 10, 9))


def test_slot_attention_matches_the_textbook_form_with_keys_and_values_of_every_input():
    # slots.py folds the key and value projections into the slot side; here the keys and
    # values of all N inputs are formed, as Locatello et al. write it, from the same weights
    g = torch.Generator().manual_seed(1)
    attention = SlotAttention(dim=16, n_slots=4, n_iters=3, input_dim=8, hidden_dim=32)
    inputs, init = torch.randn(2, 10, 8, generator=g), torch.randn(2, 4, 16, generator=g)

    def textbook(inputs, slots):
        x = attention.norm_inputs(inputs)
        k, v = attention.to_k(x), attention.to_v(x)  # (B, N, D)
        for _ in range(3):
            q = attention.to_q(attention.norm_slots(slots))
            attn = torch.einsum("bsd,bnd->bsn", q, k).mul(16**-0.5).softmax(dim=1)
            weights = (attn + 1e-8) / (attn + 1e-8).sum(dim=-1, keepdim=True)
            updates = torch.einsum("bsn,bnd->bsd", weights, v)
            slots = attention.gru(updates.reshape(-1, 16), slots.reshape(-1, 16)).reshape(2, 4, 16)
            slots = slots + attention.mlp(slots)
        return slots, attn

    out, attn = attention(inputs, init)
    expected, expected_attn = textbook(inputs, init)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(attn, expected_attn)
    grads = torch.autograd.grad(out.square().sum(), [attention.to_k.weight, attention.to_v.weight])
    expected_grads = torch.autograd.grad(expected.square().sum(), [attention.to_k.weight, attention.to_v.weight])
    for grad, expected_grad in zip(grads, expected_grads):
        assert grad.abs().sum() > 0
        torch.testing.assert_close(grad, expected_grad)


def test_init_slots_uses_the_generator():
    attention = SlotAttention(dim=16, n_slots=4, n_iters=1, input_dim=8, hidden_dim=32)
    a = attention.init_slots(2, torch.Generator().manual_seed(5))
    b = attention.init_slots(2, torch.Generator().manual_seed(5))
    c = attention.init_slots(2, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(attention.init_slots(2, noise=False), attention.mu.expand(2, -1, -1))


def test_query_init_has_no_noise_and_passes_the_gradient_straight_to_the_queries():
    torch.manual_seed(0)
    attention = SlotAttention(dim=16, n_slots=3, n_iters=3, input_dim=8, hidden_dim=32, init="query")
    torch.testing.assert_close(attention.init_slots(2, torch.Generator().manual_seed(5)),
                               attention.mu.expand(2, -1, -1))
    inputs = torch.randn(2, 10, 8)
    slots, _ = attention(inputs)
    with torch.no_grad():
        reference, _ = attention.eval()(inputs)
    torch.testing.assert_close(slots, reference)  # the straight-through path changes no value
    attention.train()
    mu_grad = torch.autograd.grad(slots.sum(), attention.mu)[0]
    # only the last iteration is differentiated: the first two would add to to_q's gradient
    truncated = torch.autograd.grad(attention(inputs)[0].sum(), attention.to_q.weight)[0]
    noisy = SlotAttention(dim=16, n_slots=3, n_iters=3, input_dim=8, hidden_dim=32, init="noise")
    noisy.load_state_dict(attention.state_dict(), strict=False)
    noisy.log_sigma.data.fill_(-30.0)  # noise off, every iteration differentiated
    full = torch.autograd.grad(noisy(inputs)[0].sum(), noisy.to_q.weight)[0]
    assert mu_grad.abs().sum() > 0 and not torch.allclose(truncated, full)
    with pytest.raises(ValueError, match="expected init 'noise' or 'query'"):
        SlotAttention(dim=16, n_slots=3, n_iters=3, input_dim=8, hidden_dim=32, init="zeros")


def test_decoders_alpha_sums_to_one():
    g = torch.Generator().manual_seed(0)
    slots = torch.randn(2, 3, 16, generator=g)
    recon, rgb, masks = BroadcastDecoder(16, 32, channels=8)(slots)
    assert recon.shape == (2, 3, 32, 32) and rgb.shape == (2, 3, 3, 32, 32) and masks.shape == (2, 3, 1, 32, 32)
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(2, 1, 32, 32))
    torch.testing.assert_close(recon, (rgb * masks).sum(dim=1))
    features, patch_masks = FeatureDecoder(16, 24, n_patches=9, hidden_dim=32)(slots)
    assert features.shape == (2, 9, 24)
    torch.testing.assert_close(patch_masks.sum(dim=1), torch.ones(2, 9))
    with pytest.raises(ValueError, match="got 48"):
        BroadcastDecoder(16, 48)
    # rgb="slot": one colour per slot, the same at every pixel
    recon, rgb, masks = BroadcastDecoder(16, 16, channels=8, rgb="slot")(slots)
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(2, 1, 16, 16))
    torch.testing.assert_close(recon, (rgb * masks).sum(dim=1))
    assert torch.equal(rgb, rgb[..., :1, :1].expand_as(rgb)) and not torch.equal(rgb[:, 0], rgb[:, 1])
    with pytest.raises(ValueError, match="expected rgb 'pixel' or 'slot'"):
        BroadcastDecoder(16, 16, rgb="alpha")


def test_slot_mixer_masks_sum_to_one_and_its_features_ignore_the_slot_order():
    torch.manual_seed(0)
    decoder = SlotMixerDecoder(16, 24, n_patches=9, hidden_dim=32)
    slots = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(1))
    features, masks = decoder(slots)
    assert features.shape == (2, 9, 24) and masks.shape == (2, 3, 9)
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(2, 9))
    order = torch.tensor([2, 0, 1])
    shuffled_features, shuffled_masks = decoder(slots[:, order])
    torch.testing.assert_close(shuffled_features, features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shuffled_masks, masks[:, order], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(masks[:, 0], masks[:, 1])   # the patches do not all mix alike
    with pytest.raises(ValueError, match="expected decoder 'mlp' or 'mixer' for dinov2"):
        SlotEncoder(backbone="dinov2", image_size=28, n_slots=3, slot_dim=32, input_dim=32, decoder="broadcast")


def test_attention_decoder_paints_one_colour_per_slot_through_slot_attention_masks():
    model = tiny_encoder(cnn_stride2=True, cnn_full_res=True, decoder="attention", decoder_rgb="slot")
    model.pixel_mean.copy_(torch.tensor([0.9, 0.8, 0.7]))
    out = model(torch.rand(2, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    # full-res features: one attention weight per pixel, and those weights are the masks
    assert out["attn"].shape == (2, 2, 3, 16 * 16) and out["masks"].shape == (2, 2, 3, 16, 16)
    torch.testing.assert_close(out["masks"], out["attn"].unflatten(-1, (16, 16)))
    torch.testing.assert_close(out["masks"].sum(dim=2), torch.ones(2, 2, 16, 16))
    colours = model.decoder.colour(out["slots"])  # (B, T, S, 3)
    expected = torch.einsum("btshw,btsc->btchw", out["masks"], colours) + model.pixel_mean[:, None, None]
    torch.testing.assert_close(out["recon"], expected)
    # the loss trains the assignment itself: its gradient reaches the keys and the pixel branch
    out["loss"].backward()
    assert model.slot_attention.to_k.weight.grad.abs().sum() > 0
    assert model.cnn.pixel_conv[0].weight.grad.abs().sum() > 0
    _, rgb, masks = AttentionDecoder(32, 4)(torch.randn(1, 3, 32), torch.full((1, 3, 16), 1 / 3))
    assert rgb.shape == (1, 3, 3, 4, 4) and torch.equal(rgb, rgb[..., :1, :1].expand_as(rgb))
    with pytest.raises(ValueError, match="needs decoder_rgb 'slot', got 'pixel'"):
        tiny_encoder(decoder="attention", decoder_rgb="pixel")
    with pytest.raises(ValueError, match="expected decoder 'broadcast' or 'attention', got 'mlp'"):
        tiny_encoder(decoder="mlp")
    with pytest.raises(ValueError, match="needs stride2_first"):
        tiny_encoder(cnn_full_res=True)


def test_encode_shapes_and_slots_carry_over_time():
    g = torch.Generator().manual_seed(0)
    model = tiny_encoder().eval()
    frames = torch.rand(2, 4, 3, 16, 16, generator=g)
    with torch.no_grad():
        out = model.encode(frames, torch.Generator().manual_seed(1))
        assert out["slots"].shape == (2, 4, 3, 32) and out["attn"].shape == (2, 4, 3, 16 * 16)
        # Same frames, different initial noise: frame 0's slots differ, and so do later
        # frames' slots, which can only happen if frame t+1 starts from frame t's slots.
        other = model.encode(frames, torch.Generator().manual_seed(2))["slots"]
        assert not torch.allclose(other[:, 3], out["slots"][:, 3], atol=1e-5)
        again = model.encode(frames, torch.Generator().manual_seed(1))["slots"]
    assert torch.equal(again, out["slots"])
    with pytest.raises(ValueError, match=r"expected float frames of shape \(B, T, 3, 16, 16\), got \(2, 3, 16, 16\)"):
        model.encode(frames[:, 0])



def test_encode_can_start_frame_0_from_given_slots_without_the_transition():
    model = tiny_encoder().eval()
    frames = torch.rand(2, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        means = model.slot_attention.init_slots(2, noise=False)
        plain = model.encode(frames, noise=False)["slots"]
        assert torch.equal(model.encode(frames, start=means)["slots"], plain)  # the means: as without
        # from frame 0's slots, frame 1 alone is one corrector pass on frame 1, no transition first
        after = model.encode(frames[:, 1:], start=plain[:, 0])["slots"][:, 0]
        by_hand = model.slot_attention(model._features(frames[:, 1:], False)[0][:, 0], plain[:, 0],
                                       n_iters=model.n_iters_first)[0]
    torch.testing.assert_close(after, by_hand)
    assert not torch.allclose(after, plain[:, 1], atol=1e-4)  # the chain's frame 1 went through the transition

def test_forward_outputs_and_segmentation():
    model = tiny_encoder(cnn_stride2=True)
    out = model(torch.rand(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert out["recon"].shape == (1, 2, 3, 16, 16) and out["masks"].shape == (1, 2, 3, 16, 16)
    assert out["attn"].shape == (1, 2, 3, 8 * 8) and out["loss"].ndim == 0
    masks = torch.zeros(1, 1, 3, 2, 2)
    masks[0, 0, 2, 0, :], masks[0, 0, 1, 1, :] = 1, 1  # top row slot 2, bottom row slot 1
    ids = masks_to_segmentation(masks, size=(4, 4))
    assert ids.shape == (1, 1, 4, 4) and ids[0, 0, 0, 0] == 2 and ids[0, 0, 3, 3] == 1


def test_dinov2_encoder_keeps_backbone_frozen():
    model = SlotEncoder(backbone="dinov2", image_size=28, n_slots=3, slot_dim=32, input_dim=32, decoder_hidden=64)
    out = model.train()(torch.rand(1, 2, 3, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert out["recon"].shape == out["features"].shape == (1, 2, 4, 384) and out["masks"].shape == (1, 2, 3, 2, 2)
    out["loss"].backward()
    assert not model.dinov2.training and all(p.grad is None for p in model.dinov2.parameters())
    assert model.slot_attention.to_k.weight.grad is not None


def test_fg_ari_perfect_random_and_video():
    true = np.zeros((40, 40), dtype=int)
    true[2:20, 2:20], true[22:38, 5:30], true[5:15, 25:38] = 1, 2, 3
    relabelled = np.array([7, 4, 9, 0])[true]  # predicted ids are arbitrary labels
    assert fg_ari(true, true) == 1.0 and fg_ari(true, relabelled) == 1.0
    random_pred = np.random.default_rng(0).integers(0, 4, size=true.shape)
    assert abs(fg_ari(true, random_pred)) < 0.05
    assert fg_ari([[0, 1, 1]], [[3, 5, 5]]) == 1.0  # one true and one predicted segment
    assert fg_ari([0, 0, 1, 1], [0, 0, 1, 2], background_ids=()) == pytest.approx(4 / 7)
    video_true = np.stack([true, true])
    video_pred = np.stack([true, np.array([0, 2, 1, 3])[true]])  # objects 1 and 2 swap ids in frame 1
    assert fg_ari(video_true[1], video_pred[1]) == 1.0
    assert fg_ari(video_true, video_pred) < 0.9


def test_mbo_perfect_and_hand_made():
    true = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2]])
    pred = np.array([[5, 5, 5, 0], [5, 5, 5, 0], [0, 0, 7, 8], [0, 0, 7, 8]])
    assert mbo(true, true) == 1.0
    # object 1: segment 5 covers it plus 2 background pixels -> 4/6; object 2 is split in halves -> 2/4
    assert mbo(true, pred) == pytest.approx((4 / 6 + 2 / 4) / 2)


def test_load_official_slots(tmp_path):
    videos = {f"{i}_pixels.mp4": np.full((5, 4, 8), i, dtype=np.float64) for i in (10, 2, 0, 1)}
    path = tmp_path / "slots.pkl"
    path.write_bytes(pickle.dumps({"train": videos, "val": {"3_pixels.mp4": np.zeros((6, 4, 8))}}))
    data = load_official_slots(path)
    assert [a[0, 0, 0] for a in data["train"]] == [0, 1, 2, 10]
    assert data["train"][0].dtype == np.float32 and data["val"][0].shape == (6, 4, 8)
    path.write_bytes(pickle.dumps({"train": videos, "val": {"3_pixels.mp4": np.zeros((6, 4, 7))}}))
    with pytest.raises(ValueError, match=r"expected slots of shape \(T, 4, 8\) .*got \(6, 4, 7\) for val/3_pixels.mp4"):
        load_official_slots(path)
    path.write_bytes(pickle.dumps({"train": {"clip.mp4": np.zeros((6, 4, 8))}}))
    with pytest.raises(ValueError, match="expected video keys like '12_pixels.mp4'"):
        load_official_slots(path)


@pytest.mark.slow
def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)  # parameter initialisation
    model = tiny_encoder()
    g = torch.Generator().manual_seed(0)
    frames = squares(8, 2, g)
    mean_image_loss = (frames - frames.mean(dim=(0, 1))).pow(2).mean().item()  # what a blurry model gets
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    with one_thread():
        for _ in range(150):
            loss = model(frames, generator=g)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * losses[0]
    assert np.mean(losses[-5:]) < 0.8 * mean_image_loss


def test_cnn_decoder_can_work_at_a_smaller_size_on_centred_frames():
    torch.manual_seed(0)
    model = SlotEncoder(backbone="cnn", image_size=32, n_slots=3, slot_dim=16, input_dim=16,
                        cnn_channels=8, decoder_channels=8, decoder_size=16)
    model.pixel_mean.copy_(torch.tensor([0.9, 0.8, 0.7]))
    frames = torch.rand(2, 2, 3, 32, 32)
    out = model(frames)
    assert out["recon"].shape == (2, 2, 3, 16, 16) and out["masks"].shape == (2, 2, 3, 16, 16)
    target = F.avg_pool2d(frames.flatten(0, 1), 2).unflatten(0, (2, 2))
    assert torch.allclose(out["loss"], F.mse_loss(out["recon"], target))
    # the decoder predicts colours relative to the data's mean colour
    decoded, _, _ = model.decoder(out["slots"].flatten(0, 1))
    assert torch.allclose(out["recon"].flatten(0, 1), decoded + model.pixel_mean[:, None, None])


def test_weighted_reconstruction_loss_favours_pixels_far_from_the_background():
    torch.manual_seed(0)
    model = SlotEncoder(backbone="cnn", image_size=16, n_slots=3, slot_dim=16, input_dim=16,
                        cnn_channels=8, decoder_channels=8, decoder_rgb="slot", recon_weight=4.0)
    model.background.copy_(torch.tensor([1.0, 1.0, 1.0]))
    frames = torch.ones(1, 2, 3, 16, 16)
    frames[..., 4:8, 4:8] = torch.tensor([0.0, 0.5, 0.0])[:, None, None]  # one object
    out = model(frames, torch.Generator().manual_seed(0))
    distance = (frames - 1).norm(dim=2, keepdim=True)  # 0 on the background
    assert distance.max() > 1
    expected = ((1 + 4.0 * distance) * (out["recon"] - frames) ** 2).mean()
    torch.testing.assert_close(out["loss"], expected)
    torch.testing.assert_close(out["mse"], F.mse_loss(out["recon"], frames))
    assert out["loss"] > out["mse"]
    assert "background" not in model.state_dict()  # set by the trainer, not saved


@pytest.mark.slow
def test_the_attention_decoder_learns_to_give_each_square_its_own_slot():
    # One colour per slot over slot attention's own masks: the loss is lowest when each
    # square's pixels go to one slot, so training separates them (at random init they do not).
    torch.manual_seed(0)
    model = tiny_encoder(cnn_stride2=True, cnn_full_res=True, decoder="attention", decoder_rgb="slot",
                         slot_init="query")
    frames, ids = squares(16, 1, torch.Generator().manual_seed(99), with_ids=True)

    def score():
        with torch.no_grad():
            seg = masks_to_segmentation(model.eval()(frames)["masks"]).numpy()
        model.train()
        return np.mean([fg_ari(ids[b].numpy(), seg[b]) for b in range(len(frames))])

    before = score()
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    with one_thread():
        for _ in range(750):
            loss = model(squares(8, 1, g))["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert before < 0.3 and score() > 0.6


def test_mask_spread_is_each_slots_weighted_variance_of_place():
    # a 1 x 5 row: places x = -1, -0.5, 0, 0.5, 1 (y = -1 throughout)
    masks = torch.zeros(1, 1, 2, 1, 5)
    masks[..., 0, 0, [0, 4]] = 1  # slot 0 holds both ends
    masks[..., 1, 0, [1, 2, 3]] = 1  # slot 1 the middle three
    weight = torch.ones(1, 1, 1, 5)
    # slot 0: centre 0, two pixels at distance 1; slot 1: centre 0, distances 0.5, 0, 0.5
    torch.testing.assert_close(mask_spread(masks, weight), torch.tensor((2 + 0.5) / 5))
    # pixels of weight 0 (the background colour) cost nothing wherever they go
    weight[..., 1:4] = 0
    torch.testing.assert_close(mask_spread(masks, weight), torch.tensor(2 / 5))
    # one slot per end: no spread; soft masks are charged like hard ones of that mass
    masks = torch.zeros(1, 1, 3, 1, 5)
    masks[..., 0, 0, 0] = masks[..., 1, 0, 4] = 1
    masks[..., 2, 0, 1:4] = 1
    assert mask_spread(masks, weight).item() == 0
    half = torch.full((1, 1, 2, 1, 5), 0.5)
    torch.testing.assert_close(mask_spread(half, torch.ones(1, 1, 1, 5)),
                               torch.tensor(2 * 0.5 * (1 + 0.25 + 0 + 0.25 + 1) / 5))


@pytest.mark.slow
def test_the_position_term_splits_two_squares_of_one_colour():
    # Two squares of the same colour: painting both from one slot reconstructs them as well
    # as two slots do, so colour alone leaves them merged; mask_spread pulls them apart.
    def two_of_a_colour(batch, generator):
        frames, ids = torch.zeros(batch, 1, 3, 16, 16), torch.zeros(batch, 1, 16, 16, dtype=torch.long)
        colours = torch.rand(batch, 3, generator=generator)
        for b in range(batch):
            corners = torch.randint(0, 12, (2, 2), generator=generator)
            while (corners[0] - corners[1]).abs().max() < 5:  # apart, not touching
                corners = torch.randint(0, 12, (2, 2), generator=generator)
            for k, (y, x) in enumerate(corners):
                frames[b, 0, :, y : y + 4, x : x + 4] = colours[b, :, None, None]
                ids[b, 0, y : y + 4, x : x + 4] = k + 1
        return frames, ids

    frames, ids = two_of_a_colour(32, torch.Generator().manual_seed(99))

    def trained_score(position_weight):
        torch.manual_seed(0)
        model = tiny_encoder(cnn_stride2=True, cnn_full_res=True, decoder="attention", decoder_rgb="slot",
                             slot_init="query", recon_weight=4.0, position_weight=position_weight)
        model.background.zero_()
        g = torch.Generator().manual_seed(0)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        with one_thread():
            for _ in range(750):
                out = model(two_of_a_colour(8, g)[0])
                optimizer.zero_grad()
                out["loss"].backward()
                optimizer.step()
        assert ("place" in out) == bool(position_weight)
        with torch.no_grad():
            seg = masks_to_segmentation(model.eval()(frames)["masks"]).numpy()
        return np.mean([fg_ari(ids[b].numpy(), seg[b]) for b in range(len(frames))])

    without, with_place = trained_score(0.0), trained_score(1.0)
    # with torch seeds 0-5 in place of 0, this gave 0.0 without and 0.54-0.96 with the term on an
    # AMD EPYC (0.594 for seed 0, which passed 0.6 on other CPUs): the gap is the claim
    assert without < 0.2 and with_place > 0.4
    with pytest.raises(ValueError, match="position_weight needs the attention decoder"):
        tiny_encoder(position_weight=1.0)


def test_mask_moments_describe_each_slots_hard_mask():
    # a 4 x 4 grid (places -1, -1/3, 1/3, 1); slot 1 wins an L of three cells, slot 2 one cell,
    # slot 0 the rest, slot 3 nothing
    attn = torch.full((4, 16), 0.1)
    attn[0] = 0.5
    for cell in (0, 4, 5):  # (x, y) = (-1, -1), (-1, -1/3), (-1/3, -1/3)
        attn[1, cell] = 0.9
    attn[2, 15] = 0.9
    out = mask_moments(attn[None])[0]  # (S, 10)
    assert out.shape == (4, 10)
    x = np.array([-1, -1, -1 / 3])
    y = np.array([-1, -1 / 3, -1 / 3])
    dx, dy = x - x.mean(), y - y.mean()
    trace = (dx**2).mean() + (dy**2).mean()
    want = [3 / 16, x.mean(), y.mean(), (dx * dx).mean() / trace, (dx * dy).mean() / trace,
            (dy * dy).mean() / trace, *((a * b * c).mean() / trace**1.5
                                       for a, b, c in ((dx, dx, dx), (dx, dx, dy), (dx, dy, dy), (dy, dy, dy)))]
    torch.testing.assert_close(out[1], torch.tensor(want, dtype=torch.float32))
    torch.testing.assert_close(out[2], torch.tensor([1 / 16, 1, 1] + [0] * 7, dtype=torch.float32))
    assert out[3].abs().sum() == 0 and out[0, 0] == 12 / 16
    # the same L turned by a quarter (x, y) -> (-y, x): xx and yy swap, xy changes sign
    turned = torch.zeros(2, 16)
    turned[0] = 1
    for x_, y_ in zip(x, y):
        turned[1, round((x_ + 1) * 1.5) * 4 + round((-y_ + 1) * 1.5)] = 2
    out_turned = mask_moments(turned)[1]
    torch.testing.assert_close(out_turned[[3, 4, 5]], out[1, [5, 4, 3]] * torch.tensor([1.0, -1.0, 1.0]))
    # slots in another order: rows in that order
    torch.testing.assert_close(mask_moments(attn[[2, 0, 3, 1]]), out[[2, 0, 3, 1]])
    with pytest.raises(ValueError, match="square grid"):
        mask_moments(torch.rand(2, 15))


def test_time_similarity_is_a_softmax_over_the_next_frames_positive_cosines():
    frame0 = torch.tensor([[2.0, 0.0], [-1.0, -2.0], [0.0, 1.0]])  # 3 patches' keys; their scale is ignored
    frame1 = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-1.0, 1.0]])
    target = time_similarity(torch.stack([frame0, frame1])[None], temperature=0.5)  # (1, 1, 3, 3)
    assert target.shape == (1, 1, 3, 3)
    s = 2 ** -0.5
    # patch 0: cosines (1, 0, -0.71): the negative one is left out, the zero one kept
    expected0 = torch.cat([torch.softmax(torch.tensor([1.0, 0.0]) / 0.5, 0), torch.zeros(1)])
    # patch 1: every cosine negative: uniform
    expected1 = torch.full((3,), 1 / 3)
    # patch 2: cosines (0, 1, 0.71), all kept
    expected2 = torch.softmax(torch.tensor([0.0, 1.0, s]) / 0.5, 0)
    torch.testing.assert_close(target[0, 0], torch.stack([expected0, expected1, expected2]))
    keys = torch.randn(2, 3, 5, 8, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):   # the cosines stay in float32
        under_bf16 = time_similarity(keys, 0.15)
    torch.testing.assert_close(under_bf16, time_similarity(keys, 0.15), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decoder", ["mlp", "mixer"])
def test_the_similarity_loss_is_the_cross_entropy_of_the_decoders_extra_rows(decoder):
    torch.manual_seed(0)
    kw = dict(backbone="dinov2", image_size=28, n_slots=3, slot_dim=32, input_dim=32, decoder_hidden=64,
              decoder=decoder)
    model = SlotEncoder(**kw, similarity_weight=0.5, similarity_temp=0.2).train()
    frames = torch.rand(2, 3, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    out = model(frames, generator=torch.Generator().manual_seed(2))
    assert out["recon"].shape == out["features"].shape == (2, 3, 4, 384)
    with torch.no_grad():   # by hand: DINOv2's keys of frames t and t+1, the decoder's last 4 numbers of frame t
        _, keys = model.dinov2.forward_features(normalize_imagenet(frames.flatten(0, 1)), keys=True)
        decoded, _ = model.decoder(out["slots"].flatten(0, 1))
        logits = decoded.view(2, 3, 4, 384 + 4)[:, :2, :, 384:]
        target = time_similarity(keys.view(2, 3, 4, 384), 0.2)
        expected = -(target * logits.log_softmax(-1)).sum(-1).mean()
    assert out["similarity"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["mse"].item() + 0.5 * expected.item(), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert all(p.grad is None for p in model.dinov2.parameters())
    plain = SlotEncoder(**kw)(frames)   # without the weight: feature MSE alone, no extra rows
    assert "similarity" not in plain and plain["loss"] == plain["mse"]
    assert plain["recon"].shape == (2, 3, 4, 384)
