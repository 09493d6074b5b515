"""Tests for predictor.py: no leakage of hidden inputs, slot-permutation equivariance, loss identity,
causal masking, head size, the hidden future action, right-aligned rollouts, and a tiny training
run on a synthetic dynamical system."""

import math

import einops
import pytest
import torch

from masking import make_mask
from predictor import Attention, Predictor, attend, cjepa_loss, last_seen, rollout

S, D, A, P = 4, 8, 3, 2
N_HISTORY, N_FUTURE = 3, 2
T = N_HISTORY + N_FUTURE


def tiny(**kwargs) -> Predictor:
    torch.manual_seed(0)
    config = dict(n_slots=S, slot_dim=D, action_dim=A, proprio_dim=P, dim=16, depth=2, heads=2,
                  dim_head=8, mlp_dim=32, dropout=0.0, max_frames=8)
    return Predictor(**{**config, **kwargs}).eval()


def inputs(B: int = 6, seed: int = 1, kind: str = "object", n_masked: int = 1):
    g = torch.Generator().manual_seed(seed)
    slots = torch.randn(B, T, S, D, generator=g)
    actions = torch.randn(B, T, A, generator=g)
    proprio = torch.randn(B, T, P, generator=g)
    mask = make_mask(kind, B, N_HISTORY, N_FUTURE, S, n_masked, g)
    return slots, mask, actions, proprio


@pytest.mark.parametrize("aux", ["nodes", "concat"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", ["object", "tube", "token"])
@pytest.mark.parametrize("residual", [False, True])
def test_hidden_inputs_do_not_leak(aux, causal, kind, residual):
    model = tiny(aux=aux, causal=causal, slot_residual=residual, proprio_residual=residual)
    slots, mask, actions, proprio = inputs(kind=kind, n_masked=2)
    out = model(slots, mask, actions, proprio, N_HISTORY)
    noise = 100 * torch.randn_like(slots)
    slots2 = torch.where(mask[..., None], slots + noise, slots)  # change every hidden slot value
    proprio2 = proprio.clone()
    proprio2[:, N_HISTORY:] += 100.0  # future proprio is a target too
    out2 = model(slots2, mask, actions, proprio2, N_HISTORY)
    assert torch.equal(out["slots"], out2["slots"])
    assert torch.equal(out["proprio"], out2["proprio"])


@pytest.mark.parametrize("aux", ["nodes", "concat"])
def test_permuting_slots_permutes_outputs(aux):
    model = tiny(aux=aux)
    slots, mask, actions, proprio = inputs()
    perm = torch.tensor([2, 0, 3, 1])
    out = model(slots, mask, actions, proprio, N_HISTORY)
    out_perm = model(slots[:, :, perm], mask[:, :, perm], actions, proprio, N_HISTORY)
    torch.testing.assert_close(out_perm["slots"], out["slots"][:, :, perm])
    torch.testing.assert_close(out_perm["proprio"], out["proprio"])


def test_loss_is_the_sum_of_its_terms_and_only_counts_targets():
    model = tiny()
    slots, mask, actions, proprio = inputs()
    pred = model(slots, mask, actions, proprio, N_HISTORY)
    loss, terms = cjepa_loss(pred, slots, mask, N_HISTORY)
    assert loss.item() == (terms["history"] + terms["future"] + terms["proprio"]).item()
    assert all(terms[k] > 0 for k in ("history", "future", "proprio"))
    for weight in (0.0, 0.25):   # the history_weight probe scales the history term, reported unweighted
        scaled, same = cjepa_loss(pred, slots, mask, N_HISTORY, history_weight=weight)
        torch.testing.assert_close(scaled, weight * terms["history"] + terms["future"] + terms["proprio"])
        assert all(same[k].item() == terms[k].item() for k in terms)
    assert not mask[:, 0].any()  # the t = 0 anchor is visible, so Eq. 5 does not score it

    target = pred["proprio_target"]
    exact = {"slots": torch.where(mask[..., None], slots, slots + 1.0), "proprio": target.clone(),
             "proprio_target": target}
    exact["proprio"][:, :N_HISTORY] += 1.0  # errors only where nothing is a target
    loss, terms = cjepa_loss(exact, slots, mask, N_HISTORY)
    assert loss.item() == 0.0

    none = make_mask("none", 6, N_HISTORY, N_FUTURE, S, 0, torch.Generator().manual_seed(0))
    loss, terms = cjepa_loss(model(slots, none, actions, proprio, N_HISTORY), slots, none, N_HISTORY)
    assert terms["history"].item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert model.slot_out.weight.grad.abs().sum() > 0


def test_actions_change_the_predicted_future():
    model = tiny()
    slots, mask, actions, proprio = inputs()
    actions2 = actions.clone()
    actions2[:, N_HISTORY - 1] += 1.0  # the action leading into the first future frame
    out = model(slots, mask, actions, proprio, N_HISTORY)
    out2 = model(slots, mask, actions2, proprio, N_HISTORY)
    assert (out["slots"][:, N_HISTORY:] - out2["slots"][:, N_HISTORY:]).abs().max() > 1e-3


@pytest.mark.parametrize("aux", ["nodes", "concat"])
def test_a_future_frames_prediction_does_not_change_with_that_frames_action(aux):
    slots, mask, actions, proprio = inputs()
    later = actions.clone()
    later[:, N_HISTORY:] += 5.0  # taken at the future frames: they cause nothing before them
    for future_action, changes in (("visible", True), ("query", False)):  # ours, the paper's
        model = tiny(aux=aux, future_action=future_action)
        out = model(slots, mask, actions, proprio, N_HISTORY)
        out2 = model(slots, mask, later, proprio, N_HISTORY)
        assert ((out["slots"] - out2["slots"]).abs().max() > 1e-3) == changes
    assert tiny().future_action == "query"  # the default
    # the actions of the history still drive the future
    earlier = actions.clone()
    earlier[:, N_HISTORY - 1] += 1.0
    out2 = model(slots, mask, earlier, proprio, N_HISTORY)
    assert (out["slots"][:, N_HISTORY:] - out2["slots"][:, N_HISTORY:]).abs().max() > 1e-3
    # in a rollout each step's own action is no input of the step's prediction
    K = 3
    a = rollout(model, slots[:, :1], actions[:, :K + 1], proprio[:, :1], n_future=K, history=N_HISTORY)
    actions3 = actions[:, :K + 1].clone()
    actions3[:, K] += 5.0
    b = rollout(model, slots[:, :1], actions3, proprio[:, :1], n_future=K, history=N_HISTORY)
    torch.testing.assert_close(a["slots"], b["slots"])
    assert "action_query" not in tiny(action_dim=0).state_dict()


@pytest.mark.parametrize("aux", ["nodes", "concat"])
def test_causal_model_does_not_see_later_frames(aux):
    slots, mask, actions, proprio = inputs()
    t = 1  # change every input of frame t + 1
    slots2, actions2, proprio2 = slots.clone(), actions.clone(), proprio.clone()
    slots2[:, t + 1] += 1.0
    actions2[:, t + 1] += 1.0
    proprio2[:, t + 1] += 1.0
    for causal in (True, False):
        model = tiny(aux=aux, causal=causal)
        out = model(slots, mask, actions, proprio, N_HISTORY)
        out2 = model(slots2, mask, actions2, proprio2, N_HISTORY)
        past_change = (out["slots"][:, : t + 1] - out2["slots"][:, : t + 1]).abs().max()
        assert (past_change < 1e-6) == causal
        assert (out["slots"][:, t + 1 :] - out2["slots"][:, t + 1 :]).abs().max() > 1e-3


def test_head_size_is_dim_head():
    dim, heads, dim_head = 16, 4, 12  # dim / heads = 4 would be the wrong head size
    attn = Attention(dim, heads, dim_head, dropout=0.0).eval()
    assert attn.to_qkv.weight.shape == (3 * heads * dim_head, dim)
    assert attn.to_out[0].weight.shape == (dim, heads * dim_head)

    x = torch.randn(2, 5, dim)
    q, k, v = attn.to_qkv(attn.norm(x)).split(heads * dim_head, dim=-1)  # each (B, L, heads * dim_head)
    q, k, v = (einops.rearrange(z, "b l (h e) -> b h l e", e=dim_head) for z in (q, k, v))
    weights = torch.softmax(torch.einsum("bhie,bhje->bhij", q, k) / math.sqrt(dim_head), dim=-1)
    manual = attn.to_out(einops.rearrange(weights @ v, "b h l e -> b l (h e)"))
    torch.testing.assert_close(attn(x, None), manual)


def test_bad_inputs_raise_clear_errors():
    model = tiny()
    slots, mask, actions, proprio = inputs()
    with pytest.raises(ValueError, match=r"expected slots of shape \(B, T, 4, 8\), got \(6, 5, 3, 8\)"):
        model(slots[:, :, :3], mask, actions, proprio, N_HISTORY)
    with pytest.raises(ValueError, match="must all be hidden"):
        model(slots, torch.zeros_like(mask), actions, proprio, N_HISTORY)
    with pytest.raises(ValueError, match="expected actions of shape"):
        model(slots, mask, None, proprio, N_HISTORY)
    with pytest.raises(ValueError, match="aux"):
        Predictor(n_slots=S, aux="sum")


def test_model_without_actions_or_proprio():
    model = tiny(action_dim=0, proprio_dim=0)
    slots, mask, _, _ = inputs()
    pred = model(slots, mask, None, None, N_HISTORY)
    loss, terms = cjepa_loss(pred, slots, mask, N_HISTORY)
    assert pred["proprio"] is None and terms["proprio"].item() == 0.0
    assert rollout(model, slots[:, :2], None, None, n_future=3, history=2)["slots"].shape == (6, 3, S, D)


def test_rollout_shapes_and_one_step_equals_forward():
    model = tiny()
    E, N, T0, K = 2, 3, 1, 4
    g = torch.Generator().manual_seed(0)
    slots = torch.randn(E, N, T0, S, D, generator=g)
    actions = torch.randn(E, N, T0 + K, A, generator=g)
    proprio = torch.randn(E, N, T0, P, generator=g)
    out = rollout(model, slots, actions, proprio, n_future=K, history=N_HISTORY)
    assert out["slots"].shape == (E, N, K, S, D) and out["proprio"].shape == (E, N, K, model.dim)
    single = rollout(model, slots[1, 2], actions[1, 2], proprio[1, 2], n_future=K, history=N_HISTORY)
    torch.testing.assert_close(single["slots"], out["slots"][1, 2])

    slots, _, actions, proprio = inputs()
    T0 = 3
    step = rollout(model, slots[:, :T0], actions[:, : T0 + 1], proprio[:, :T0], n_future=1, history=N_HISTORY)
    mask = torch.zeros(6, T0 + 1, S, dtype=torch.bool)
    mask[:, T0] = True
    manual = model(slots[:, : T0 + 1], mask, actions[:, : T0 + 1], proprio[:, : T0 + 1], n_history=T0)
    torch.testing.assert_close(step["slots"], manual["slots"][:, T0:])
    torch.testing.assert_close(step["proprio"], manual["proprio"][:, T0:])


def test_rollout_in_blocks_predicts_each_block_in_one_call():
    model = tiny()
    slots, _, actions, proprio = inputs()
    T0, k = 2, 2
    out = rollout(model, slots[:, :T0], actions[:, :T0 + 3], proprio[:, :T0], n_future=3, history=T0, block=k)
    assert out["slots"].shape == (6, 3, S, D)
    mask = torch.zeros(6, T0 + k, S, dtype=torch.bool)
    mask[:, T0:] = True
    first = model(slots[:, :T0 + k], mask, actions[:, :T0 + k], proprio[:, :T0 + k], n_history=T0,
                  time_offset=N_HISTORY - T0)
    torch.testing.assert_close(out["slots"][:, :k], first["slots"][:, T0:])    # both frames in one call
    one_by_one = rollout(model, slots[:, :T0], actions[:, :T0 + 3], proprio[:, :T0], n_future=3, history=T0)
    assert (one_by_one["slots"][:, 1] - out["slots"][:, 1]).abs().max() > 1e-4  # not the same rollout
    with pytest.raises(ValueError, match="block"):
        rollout(model, slots[:, :T0], None, None, n_future=1, history=T0, block=0)


def test_rollout_context_grows_to_the_history_right_aligned_in_time():
    model = tiny(n_history=N_HISTORY)
    slots, _, actions, proprio = inputs()
    calls = []
    forward = model.forward

    def recording(*args, **kwargs):
        calls.append((args[0].shape[1], kwargs["n_history"], kwargs["time_offset"]))
        return forward(*args, **kwargs)
    model.forward = recording
    rollout(model, slots[:, :1], actions[:, :5], proprio[:, :1], n_future=4, history=N_HISTORY)
    # (frames in the window, of which visible, first time position): 1 observed frame, then the
    # context grows with predicted frames to 3; the newest visible frame always sits at position 2
    assert calls == [(2, 1, 2), (3, 2, 1), (4, 3, 0), (4, 3, 0)]
    calls.clear()
    rollout(model, slots[:, :1], actions[:, :3], proprio[:, :1], n_future=2, history=N_HISTORY, align="left")
    assert calls == [(2, 1, 0), (3, 2, 0)]


def test_newest_frame_gets_the_time_embedding_it_had_in_training():
    model = tiny(n_history=N_HISTORY)
    slots, _, actions, proprio = inputs()
    first = rollout(model, slots[:, :1], actions[:, :2], proprio[:, :1], n_future=1, history=N_HISTORY)
    with torch.no_grad():  # only positions n_history - 1 (newest observed) and n_history (predicted) count
        model.time_pos[:N_HISTORY - 1] = torch.randn_like(model.time_pos[:N_HISTORY - 1])
        model.time_pos[N_HISTORY + 1:] = torch.randn_like(model.time_pos[N_HISTORY + 1:])
    again = rollout(model, slots[:, :1], actions[:, :2], proprio[:, :1], n_future=1, history=N_HISTORY)
    torch.testing.assert_close(first["slots"], again["slots"])
    with torch.no_grad():
        model.time_pos[N_HISTORY - 1] += torch.randn(model.dim)
    moved = rollout(model, slots[:, :1], actions[:, :2], proprio[:, :1], n_future=1, history=N_HISTORY)
    assert (moved["slots"] - first["slots"]).abs().max() > 1e-3


def test_proprio_is_predicted_and_scored_as_its_detached_embedding():
    model = tiny()
    slots, mask, actions, proprio = inputs()
    pred = model(slots, mask, actions, proprio, N_HISTORY)
    assert pred["proprio"].shape == (6, T, model.dim)
    embedded = model.proprio_in(proprio).detach()  # (B, T, dim)
    _, terms = cjepa_loss(pred, slots, mask, N_HISTORY)
    by_hand = (pred["proprio"][:, N_HISTORY:] - embedded[:, N_HISTORY:]).pow(2).mean()
    torch.testing.assert_close(terms["proprio"], by_hand.detach())
    # the target carries no gradient: with the predictions detached, nothing is left to train
    frozen = {k: v.detach() for k, v in pred.items()}
    loss, _ = cjepa_loss(frozen, slots, mask, N_HISTORY)
    assert not loss.requires_grad
    raw = tiny(proprio_space="raw")(slots, mask, actions, proprio, N_HISTORY)
    assert raw["proprio"].shape == (6, T, P) and torch.equal(raw["proprio_target"], proprio)


def test_rollout_window_keeps_only_the_last_history_frames():
    model = tiny()
    slots, _, actions, proprio = inputs()
    old = slots.clone()
    old[:, 0] += 10.0  # frame 0 is outside a window of 2 frames when predicting frame 3
    a = rollout(model, slots[:, :3], actions[:, :4], proprio[:, :3], n_future=1, history=2)
    b = rollout(model, old[:, :3], actions[:, :4], proprio[:, :3], n_future=1, history=2)
    torch.testing.assert_close(a["slots"], b["slots"])


def synthetic_batch(B: int, g: torch.Generator):
    """Slots = (x, y, gain, identity...): each object moves by gain * action; proprio = the action."""
    gain = torch.rand(B, 1, S, 1, generator=g) + 0.5  # (B, 1, S, 1)
    identity = torch.randn(B, 1, S, D - 3, generator=g)
    actions = 0.5 * torch.randn(B, T, 2, generator=g)
    start = torch.randn(B, 1, S, 2, generator=g)
    steps = torch.cumsum(actions[:, :-1], dim=1)[:, :, None] * gain  # (B, T - 1, S, 2)
    position = torch.cat([start, start + steps], dim=1)  # (B, T, S, 2)
    slots = torch.cat([position, gain.expand(B, T, S, 1), identity.expand(B, T, S, D - 3)], dim=-1)
    return slots, actions, actions.clone()


def test_tiny_model_learns_a_synthetic_dynamical_system():
    torch.manual_seed(0)
    model = Predictor(n_slots=S, slot_dim=D, action_dim=2, proprio_dim=2, dim=32, depth=2, heads=4,
                      dim_head=8, mlp_dim=64, dropout=0.0, max_frames=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        slots, actions, proprio = synthetic_batch(64, g)
        mask = make_mask("object", 64, N_HISTORY, N_FUTURE, S, 1, g)
        loss, _ = cjepa_loss(model(slots, mask, actions, proprio, N_HISTORY), slots, mask, N_HISTORY)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.2 * losses[0]


@pytest.mark.parametrize("masked", [False, True])
def test_explicit_attention_equals_the_fused_kernel(masked):
    q, k, v = torch.randn(3, 5, 2, 12, 16).unbind(0)
    allowed = torch.rand(12, 12) < 0.6 if masked else None
    if allowed is not None:
        allowed |= torch.eye(12, dtype=torch.bool)  # every query sees at least itself
    fused = attend(q, k, v, allowed, 0.0, explicit=False)
    explicit = attend(q, k, v, allowed, 0.0, explicit=True)
    assert torch.allclose(explicit, fused, atol=1e-5)
    assert not torch.allclose(fused, attend(q, k, v.flip(2), allowed, 0.0, explicit=True), atol=1e-2)


@pytest.mark.parametrize("aux", ["nodes", "concat"])
def test_residual_proprio_is_a_change_from_the_last_observed_frame(aux):
    slots, mask, actions, proprio = inputs()
    plain = tiny(aux=aux, proprio_space="raw")
    residual = tiny(aux=aux, proprio_space="raw", proprio_residual=True)  # the same weights
    out_plain = plain(slots, mask, actions, proprio, N_HISTORY)["proprio"]
    out_residual = residual(slots, mask, actions, proprio, N_HISTORY)["proprio"]
    last = proprio[:, N_HISTORY - 1:N_HISTORY]
    assert torch.allclose(out_residual, out_plain + last, atol=1e-6)
    assert not torch.allclose(out_residual, out_plain, atol=1e-2)


def test_last_seen_is_the_latest_visible_value_before_a_hidden_token():
    slots = torch.arange(1 * 4 * 3, dtype=torch.float32).reshape(1, 4, 3, 1)  # value = 3 t + s
    mask = torch.tensor([[[0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]]], dtype=torch.bool)  # (1, T=4, S=3)
    expected = torch.tensor([[[0, 1, 0], [0, 4, 0], [6, 4, 0], [6, 4, 0]]], dtype=torch.float32)
    assert torch.equal(last_seen(slots, mask)[..., 0], expected)  # slot 2 is never seen: 0


@pytest.mark.parametrize("kind", ["object", "tube"])
def test_residual_slots_are_a_change_from_the_last_visible_value(kind):
    slots, mask, actions, proprio = inputs(kind=kind, n_masked=2)
    plain, residual = tiny(), tiny(slot_residual=True)  # the same weights
    out_plain = plain(slots, mask, actions, proprio, N_HISTORY)["slots"]
    out_residual = residual(slots, mask, actions, proprio, N_HISTORY)["slots"]
    assert torch.allclose(out_residual, out_plain + last_seen(slots, mask), atol=1e-6)
    # a future slot starts from the last history frame, unless it was masked there
    shown = ~mask[:, N_HISTORY - 1]  # (B, S)
    base = last_seen(slots, mask)[:, N_HISTORY]
    assert torch.equal(base[shown], slots[:, N_HISTORY - 1][shown])


@pytest.mark.parametrize("kind", ["object", "tube", "token"])
@pytest.mark.parametrize("residual", [False, True])
def test_normalised_slots_make_the_predictor_follow_an_affine_change_of_the_slots(kind, residual):
    """slot_norm (ours): with statistics fitted on each, slots a * x + b (a and b per slot index
    and feature) give predictions a * pred + b from the same weights, hidden inputs still unseen
    (a tube-masked slot, never seen, included)."""
    slots, mask, actions, proprio = inputs(kind=kind, n_masked=2)
    g = torch.Generator().manual_seed(5)
    a, b = 0.01 + torch.rand(S, D, generator=g), 50 * torch.randn(S, D, generator=g)
    frames = torch.randn(100, S, D, generator=g)
    model, moved = tiny(slot_norm=True, slot_residual=residual), tiny(slot_norm=True, slot_residual=residual)
    model.fit_slot_norm([frames])
    moved.fit_slot_norm([a * frames[:30] + b, a * frames[30:] + b])  # in chunks, as train.py gives them
    torch.testing.assert_close(model.slot_mean, frames.mean(0))
    torch.testing.assert_close(moved.slot_std, a * frames.std(0))
    out = model(slots, mask, actions, proprio, N_HISTORY)
    out_moved = moved(a * slots + b, mask, actions, proprio, N_HISTORY)
    torch.testing.assert_close(out_moved["slots"], a * out["slots"] + b, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(out_moved["proprio"], out["proprio"], rtol=1e-4, atol=1e-4)
    # without it, the same affine change is not followed
    plain = tiny(slot_residual=residual)
    assert not torch.allclose(plain(a * slots + b, mask, actions, proprio, N_HISTORY)["slots"],
                              a * plain(slots, mask, actions, proprio, N_HISTORY)["slots"] + b, atol=1e-1)
    noisy = torch.where(mask[..., None], slots + 100 * torch.randn_like(slots), slots)
    assert torch.equal(model(noisy, mask, actions, proprio, N_HISTORY)["slots"], out["slots"])


def test_slot_norm_statistics_are_saved_with_the_weights_and_checked():
    model = tiny(slot_norm=True)
    model.fit_slot_norm([3 + 2 * torch.randn(50, S, D)])
    restored = tiny(slot_norm=True)
    restored.load_state_dict(model.state_dict())
    slots, mask, actions, proprio = inputs()
    assert torch.equal(restored(slots, mask, actions, proprio, N_HISTORY)["slots"],
                       model(slots, mask, actions, proprio, N_HISTORY)["slots"])
    assert "slot_mean" not in tiny().state_dict()  # the paper's predictor has no such buffers
    model.fit_slot_norm([torch.ones(10, S, D)])  # constant entries: the floor, not a division by 0
    assert torch.equal(model.slot_std, torch.full((S, D), 1e-4))
    with pytest.raises(ValueError, match=r"expected slots \(N, 4, 8\), got \(10, 3, 8\)"):
        model.fit_slot_norm([torch.ones(10, 3, D)])
    with pytest.raises(ValueError, match="at least 2 frames of slots, got 1"):
        model.fit_slot_norm([torch.ones(1, S, D)])
    with pytest.raises(ValueError, match="built with slot_norm=True"):
        tiny().fit_slot_norm([torch.ones(10, S, D)])
