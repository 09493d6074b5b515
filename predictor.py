"""The C-JEPA predictor, its loss and its rollout (paper, method section: predictor and objective).

Each frame t contributes S slot tokens and, on Push-T, one action token and one proprio token
("nodes"). All T x (S + 2) tokens go through one bidirectional pre-LN transformer. A hidden slot
token is replaced by the identity query `mask_token + time_pos[t] + Linear(slot at t = 0)`, so the
model is told *which* object to predict but not its state. There is no slot-index embedding:
slots are a set and permuting them permutes the outputs.

Loss (weights 1:1:1, each term mean-reduced): MSE on the hidden history slots (Eq. 5 scores only
masked inputs, so the visible t = 0 anchor is not a target; the official code also averages the
anchor in) + MSE on all future slots + MSE on the future proprio. As in the official code, proprio
is predicted and scored as its embedding (of the model's width, 128 in the paper): the target is
the proprio encoder's output for the true proprio, detached. The action node is never a target,
and the action of a future frame is never shown: its token is a learned query (the action taken
*at* the predicted frame causes nothing inside the window).

Time positions are fixed relative to the prediction: history frame n_history - 1 is always the
newest observed frame. A window with fewer history frames (a rollout that starts from one
observed frame) is right-aligned to the positions it had in training (`time_offset`).

Options that are ours, not the paper's, all off by default (docs/additions.md measures each):
proprio_residual / slot_residual predict the change since the last visible frame instead of the
value ("nothing moves" is the zero output instead of a copy through the network; for a slot masked
in the history the base is the t = 0 anchor), future_action="visible" shows the future frame's
action, proprio_space="raw" predicts the z-scored proprio itself instead of its embedding,
slot_norm reads and writes each slot entry centred and scaled by its training mean and spread
(per slot index and feature: `fit_slot_norm`), so the network models changes, not each slot's
large constant part; the loss and the rollouts stay in the slots' own space. It ties slot k to
its own statistics, so slots are then no longer a set (meant for query-initialised slots, where
slot k is one object; a residual is taken in the normalised space, so an unseen slot's base is
its mean).

Two baselines are options of the same module:
- causal=True (OC-DINO-WM): block-causal attention, a token at frame t sees frames <= t.
  Targets are formed exactly as in the bidirectional model: the output at a hidden token of
  frame t is the prediction of frame t. With future frames hidden, a prediction of frame t sees
  the real inputs of frames < t, the actions up to t, and the identity queries of frame t, so
  the same loss and rollout code serve both modes.
- aux="concat" (the paper's concatenation ablation): no action / proprio tokens; the action and
  proprio embeddings of frame t (of size aux_dim: the model width by default, 10 in DINO-WM) are
  concatenated to every slot token of frame t and projected back to the model width. Future
  proprio is then read from the mean of the frame's slot outputs.

The patch-token world model (DINO-WM, paper App. H) is this module with causal=True,
aux="concat", aux_dim=10 and token_pos=True: its "slots" are a frame's patch features, which,
unlike slots, have a place, so each token index gets a learned position embedding.
"""

import einops
import torch
import torch.nn.functional as F
from torch import nn

SLOT, ACTION, PROPRIO = 0, 1, 2  # rows of the token-type embedding


class Attention(nn.Module):
    """Pre-LN multi-head self-attention with `heads` heads of size `dim_head` each."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """x: (B, L, dim); allowed: (L, L) bool, True where query i may attend key j, or None."""
        qkv = self.to_qkv(self.norm(x))  # (B, L, 3 * heads * dim_head)
        q, k, v = einops.rearrange(qkv, "b l (three h e) -> three b h l e", three=3, h=self.heads)
        out = attend(q, k, v, allowed, self.dropout if self.training else 0.0)  # (B, heads, L, dim_head)
        return self.to_out(einops.rearrange(out, "b h l e -> b l (h e)"))


# On a GPU, the fused float32 attention kernel works on tiles of 64 queries x 64 keys, and
# the predictor's sequences are short (12 tokens when the planner rolls out from one frame):
# over many of them attention written out as two products is faster, over few slower
# (benchmarks/gpu_attention.py; the numbers are in docs/speed.md).
SHORT_SEQUENCE, MANY_ROWS = 64, 16384


def attend(q, k, v, allowed, dropout_p, explicit=None):
    """Softmax attention of q, k, v (B, heads, L, e); allowed: (L, L) bool or None.

    The same function as F.scaled_dot_product_attention. explicit=None picks the way: written
    out as matrix products for many short sequences on a GPU, the fused kernel otherwise.
    """
    if explicit is None:
        explicit = (q.is_cuda and q.shape[-2] <= SHORT_SEQUENCE
                    and q.shape[0] * q.shape[1] >= MANY_ROWS)
    if not explicit:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, heads, L, L)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return F.dropout(scores.softmax(dim=-1), dropout_p) @ v


class FeedForward(nn.Module):
    """Pre-LN MLP: dim -> mlp_dim -> dim."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """One transformer layer: x + attention(x), then x + mlp(x)."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.attn = Attention(dim, heads, dim_head, dropout)
        self.ff = FeedForward(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(x, allowed)
        return x + self.ff(x)


class Predictor(nn.Module):
    """Masked slot predictor over T frames of S slots plus action / proprio inputs.

    action_dim = 0 or proprio_dim = 0 means the dataset has no such input (CLEVRER has neither).
    aux: "nodes" (one action and one proprio token per frame) or "concat" (see module docstring).
    n_history: the history length trained with; the newest observed frame of a rollout window
    takes its time position, n_history - 1. proprio_space: "embedding" (the paper's code) or
    "raw" (ours); future_action: "query" (the paper) or "visible" (ours). aux_dim: the size of
    the concatenated action and proprio embeddings (None: dim). token_pos: a learned embedding
    per token index (patch tokens; slots have none).
    """

    def __init__(
        self,
        n_slots: int,
        slot_dim: int = 128,
        action_dim: int = 10,
        proprio_dim: int = 4,
        dim: int | None = None,
        depth: int = 6,
        heads: int = 16,
        dim_head: int = 64,
        mlp_dim: int = 2048,
        dropout: float = 0.1,
        max_frames: int = 32,
        aux: str = "nodes",
        causal: bool = False,
        n_history: int = 3,
        proprio_space: str = "embedding",
        future_action: str = "query",
        proprio_residual: bool = False,
        slot_residual: bool = False,
        aux_dim: int | None = None,
        token_pos: bool = False,
        slot_norm: bool = False,
    ):
        super().__init__()
        for name, value, allowed in (("aux", aux, ("nodes", "concat")),
                                     ("proprio_space", proprio_space, ("embedding", "raw")),
                                     ("future_action", future_action, ("query", "visible"))):
            if value not in allowed:
                raise ValueError(f"expected {name} in {allowed}, got {value!r}")
        dim = slot_dim if dim is None else dim
        # the action and proprio embeddings are of the model width, or aux_dim when concatenated
        aux_dim = dim if aux_dim is None or aux == "nodes" else aux_dim
        for name, value in (("n_slots", n_slots), ("slot_dim", slot_dim), ("max_frames", max_frames),
                            ("n_history", n_history), ("aux_dim", aux_dim)):
            if value < 1:
                raise ValueError(f"expected {name} >= 1, got {value}")
        if action_dim < 0 or proprio_dim < 0:
            raise ValueError(f"expected action_dim, proprio_dim >= 0, got {action_dim}, {proprio_dim}")
        self.n_slots, self.slot_dim, self.dim, self.aux_dim = n_slots, slot_dim, dim, aux_dim
        self.action_dim, self.proprio_dim = action_dim, proprio_dim
        self.max_frames, self.aux, self.causal, self.n_history = max_frames, aux, causal, n_history
        self.proprio_space, self.future_action = proprio_space, future_action
        self.proprio_residual, self.slot_residual = proprio_residual, slot_residual
        self.slot_norm = slot_norm
        if slot_norm:  # set by fit_slot_norm before training; saved with the weights
            self.register_buffer("slot_mean", torch.zeros(n_slots, slot_dim))
            self.register_buffer("slot_std", torch.ones(n_slots, slot_dim))

        self.slot_in = nn.Linear(slot_dim, dim)
        self.anchor_in = nn.Linear(slot_dim, dim)  # identity query from the slot at t = 0
        self.action_in = nn.Linear(action_dim, aux_dim) if action_dim else None
        self.proprio_in = nn.Linear(proprio_dim, aux_dim) if proprio_dim else None
        self.mask_token = nn.Parameter(0.02 * torch.randn(dim))
        self.proprio_mask_token = nn.Parameter(0.02 * torch.randn(aux_dim))
        if action_dim and future_action == "query":
            self.action_query = nn.Parameter(0.02 * torch.randn(aux_dim))
        self.time_pos = nn.Parameter(0.02 * torch.randn(max_frames, dim))
        self.type_emb = nn.Parameter(0.02 * torch.randn(3, dim))
        self.token_pos = nn.Parameter(0.02 * torch.randn(n_slots, dim)) if token_pos else None
        n_aux = int(action_dim > 0) + int(proprio_dim > 0)
        self.fuse = nn.Linear(dim + n_aux * aux_dim, dim) if aux == "concat" and n_aux else None

        self.blocks = nn.ModuleList(Block(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.slot_out = nn.Linear(dim, slot_dim)
        # the proprio head predicts in proprio_space: its embedding (aux_dim), or the raw proprio
        self.proprio_out = (nn.Linear(dim, aux_dim if proprio_space == "embedding" else proprio_dim)
                            if proprio_dim else None)

    def _check_inputs(self, slots, mask, actions, proprio, n_history, time_offset, proprio_embedded) -> None:
        S, D, A = self.n_slots, self.slot_dim, self.action_dim
        P = self.aux_dim if proprio_embedded else self.proprio_dim
        if slots.ndim != 4 or slots.shape[2:] != (S, D):
            raise ValueError(f"expected slots of shape (B, T, {S}, {D}), got {tuple(slots.shape)}")
        B, T = slots.shape[:2]
        if time_offset < 0 or not 1 <= time_offset + T <= self.max_frames:
            raise ValueError(f"expected time_offset >= 0 and 1 <= time_offset + T <= max_frames = "
                             f"{self.max_frames}, got time_offset = {time_offset}, T = {T}")
        if proprio_embedded and self.proprio_space != "embedding":
            raise ValueError("proprio_embedded=True needs a model with proprio_space='embedding'")
        if mask.shape != (B, T, S) or mask.dtype != torch.bool:
            got = f"{mask.dtype} {tuple(mask.shape)}"
            raise ValueError(f"expected a bool mask of shape ({B}, {T}, {S}), got {got}")
        if not 1 <= n_history <= T:
            raise ValueError(f"expected 1 <= n_history <= T = {T}, got n_history = {n_history}")
        if not mask[:, n_history:].all():
            raise ValueError("future slots (t >= n_history) are targets and must all be hidden in the mask")
        for name, x, size in (("actions", actions, A), ("proprio", proprio, P)):
            if size == 0 and x is not None:
                got = tuple(x.shape)
                raise ValueError(f"model was built with {name} dim 0, expected {name}=None, got {got}")
            if size > 0 and (x is None or x.shape != (B, T, size)):
                got = None if x is None else tuple(x.shape)
                raise ValueError(f"expected {name} of shape ({B}, {T}, {size}), got {got}")

    @torch.no_grad()
    def fit_slot_norm(self, chunks, floor: float = 1e-4) -> None:
        """slot_norm: set each slot index's and feature's mean and standard deviation (at least
        ``floor``) over the training slots, given as chunks of frames, each (n, S, D)."""
        if not self.slot_norm:
            raise ValueError("fit_slot_norm is for a predictor built with slot_norm=True")
        n, total, squares = 0, 0.0, 0.0
        for slots in chunks:
            if slots.ndim != 3 or slots.shape[1:] != self.slot_mean.shape:
                raise ValueError(f"expected slots (N, {self.n_slots}, {self.slot_dim}), got {tuple(slots.shape)}")
            slots = slots.to(self.slot_mean.device, torch.float64)
            n, total, squares = n + len(slots), total + slots.sum(0), squares + slots.pow(2).sum(0)
        if n < 2:
            raise ValueError(f"expected at least 2 frames of slots, got {n}")
        mean = total / n
        self.slot_mean.copy_(mean)
        self.slot_std.copy_(((squares - n * mean ** 2) / (n - 1)).clamp(min=0).sqrt().clamp(min=floor))

    def proprio_features(self, proprio: torch.Tensor) -> torch.Tensor:
        """Raw z-scored proprio (..., P) -> the space the model predicts it in: its embedding
        (..., aux_dim) with proprio_space "embedding", the proprio itself with "raw"."""
        return self.proprio_in(proprio) if self.proprio_space == "embedding" else proprio

    def _embed(self, slots, mask, actions, proprio_tok, n_history, time_offset) -> torch.Tensor:
        """Build the token sequence (B, T * tokens_per_frame, dim); frame-major, slots first.
        proprio_tok: (B, T, aux_dim), the proprio embeddings, or None."""
        T = slots.shape[1]
        time = self.time_pos[time_offset:time_offset + T]  # (T, dim)
        future = (torch.arange(T, device=slots.device) >= n_history)[None, :, None]  # (1, T, 1)

        visible = self.slot_in(slots)  # (B, T, S, dim)
        anchor_seen = ~mask[:, 0, :, None]  # (B, S, 1): no anchor from a slot hidden at t = 0 (tube mask)
        anchor = torch.where(anchor_seen, self.anchor_in(slots[:, 0]), 0.0)  # (B, S, dim)
        query = self.mask_token + anchor[:, None]  # (B, 1, S, dim)
        slot_tok = torch.where(mask[..., None], query, visible)  # (B, T, S, dim)
        if self.token_pos is not None:  # patch tokens: where in the frame
            slot_tok = slot_tok + self.token_pos

        aux = []  # (embedding (B, T, aux_dim), token type) per auxiliary input
        if self.action_in is not None:
            action_tok = self.action_in(actions)  # (B, T, aux_dim)
            if self.future_action == "query":
                # actions[:, t] is taken at frame t and moves the world to t + 1: a future
                # frame's action is not known when its state is predicted, and as the data's
                # policy picks it from where the agent and block are, it would tell the
                # predictor where that frame is.
                action_tok = torch.where(future, self.action_query, action_tok)
            aux.append((action_tok, ACTION))
        if proprio_tok is not None:
            aux.append((torch.where(future, self.proprio_mask_token, proprio_tok), PROPRIO))

        if self.aux == "concat":
            if aux:
                per_slot = [einops.repeat(a, "b t d -> b t s d", s=self.n_slots) for a, _ in aux]
                slot_tok = self.fuse(torch.cat([slot_tok, *per_slot], dim=-1))  # (B, T, S, dim)
            tokens = slot_tok + time[:, None] + self.type_emb[SLOT]  # (B, T, S, dim)
        else:
            slot_tok = slot_tok + self.type_emb[SLOT]
            aux_tok = [(a + self.type_emb[kind])[:, :, None] for a, kind in aux]  # each (B, T, 1, dim)
            tokens = torch.cat([slot_tok, *aux_tok], dim=2)  # (B, T, S + n_aux, dim)
            tokens = tokens + time[:, None]
        return einops.rearrange(tokens, "b t n d -> b (t n) d")

    def _attention_mask(self, T: int, per_frame: int, device: torch.device) -> torch.Tensor | None:
        """(L, L) bool, True where a token may attend: frames <= its own frame. None if bidirectional."""
        if not self.causal:
            return None
        frame = torch.arange(T, device=device).repeat_interleave(per_frame)  # (L,)
        return frame[:, None] >= frame[None, :]

    def forward(
        self,
        slots: torch.Tensor,
        mask: torch.Tensor,
        actions: torch.Tensor | None,
        proprio: torch.Tensor | None,
        n_history: int,
        time_offset: int = 0,
        proprio_embedded: bool = False,
    ) -> dict:
        """Predict every frame from the visible tokens.

        slots: (B, T, S, D); mask: (B, T, S) bool, True = hidden (every future slot must be hidden);
        actions: (B, T, A) or None; proprio: (B, T, P) raw z-scored, or (B, T, aux_dim) embeddings with
        proprio_embedded=True (a rollout feeding back its predictions), or None; frames >= n_history
        are the future (their proprio values are never read). Frame t takes time position
        time_offset + t.
        Returns {"slots": (B, T, S, D), "proprio": (B, T, P') or None, "proprio_target": (B, T, P')
        or None}, P' the size of proprio_space; "proprio_target" is the true proprio in that space
        (the embedding detached). Only hidden positions (and future proprio) are meaningful
        predictions; the others are whatever the model outputs.
        """
        self._check_inputs(slots, mask, actions, proprio, n_history, time_offset, proprio_embedded)
        T, S = slots.shape[1], self.n_slots
        proprio_tok = target = None
        if self.proprio_in is not None:
            proprio_tok = proprio if proprio_embedded else self.proprio_in(proprio)  # (B, T, aux_dim)
            target = proprio_tok.detach() if self.proprio_space == "embedding" else proprio
        seen = (slots - self.slot_mean) / self.slot_std if self.slot_norm else slots
        x = self._embed(seen, mask, actions, proprio_tok, n_history, time_offset)  # (B, L, dim)
        per_frame = x.shape[1] // T
        allowed = self._attention_mask(T, per_frame, x.device)
        for block in self.blocks:
            x = block(x, allowed)
        x = einops.rearrange(self.norm(x), "b (t n) d -> b t n d", t=T)  # (B, T, tokens per frame, dim)

        pred_slots = self.slot_out(x[:, :, :S])  # (B, T, S, D)
        if self.slot_residual:
            pred_slots = pred_slots + last_seen(seen, mask)
        if self.slot_norm:  # back to the slots' own space
            pred_slots = pred_slots * self.slot_std + self.slot_mean
        pred_proprio = None
        if self.proprio_out is not None:
            if self.aux == "concat":
                pred_proprio = self.proprio_out(x.mean(dim=2))  # (B, T, P), from the mean slot output
            else:
                pred_proprio = self.proprio_out(x[:, :, -1])  # (B, T, P), from the proprio token
            if self.proprio_residual:  # a change from the last observed proprio
                pred_proprio = pred_proprio + target[:, n_history - 1:n_history]
        return {"slots": pred_slots, "proprio": pred_proprio, "proprio_target": target}


def last_seen(slots: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, S, D): slot s at the latest frame <= t where the mask shows it; 0 where it has not
    been visible yet (a tube-masked slot). For a hidden (t, s) that is the latest frame before t,
    so the value is known to the predictor without leaking the target."""
    t = torch.arange(slots.shape[1], device=slots.device)[None, :, None]  # (1, T, 1)
    seen_at = torch.where(mask, -1, t).cummax(dim=1).values  # (B, T, S)
    base = slots.gather(1, seen_at.clamp(min=0)[..., None].expand_as(slots))
    return torch.where(seen_at[..., None] >= 0, base, 0.0)


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries where `select` is True; 0 (not NaN) if none are.

    pred, target: (..., F); select: bool, broadcastable to pred without its last axis.
    """
    weight = select[..., None].expand_as(pred).to(pred.dtype)
    return ((pred - target) ** 2 * weight).sum() / weight.sum().clamp(min=1.0)


def cjepa_loss(pred: dict, slots: torch.Tensor, mask: torch.Tensor, n_history: int,
               history_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """C-JEPA loss (Eq. 5-6), weights 1:1:1, each term mean-reduced (``history_weight``, a probe
    of ours, scales the history term).

    pred: output of Predictor.forward (its "proprio_target" is the proprio target, in the space
    the proprio is predicted in); slots: target slots (B, T, S, D); mask: (B, T, S) bool, the
    mask the prediction was made with. Returns (loss, terms) with terms {"history", "future",
    "proprio"} (detached 0-d tensors, unweighted) and loss == history_weight * history + future + proprio.
    """
    proprio = pred.get("proprio_target")
    if pred["slots"].shape != slots.shape:
        expected = tuple(pred["slots"].shape)
        raise ValueError(f"expected target slots of shape {expected}, got {tuple(slots.shape)}")
    if mask.shape != slots.shape[:3] or mask.dtype != torch.bool:
        got = f"{mask.dtype} {tuple(mask.shape)}"
        raise ValueError(f"expected a bool mask of shape {tuple(slots.shape[:3])}, got {got}")
    if (pred["proprio"] is None) != (proprio is None):
        raise ValueError("expected pred['proprio_target'] exactly when the model predicts proprio")
    T = slots.shape[1]
    future = torch.arange(T, device=slots.device) >= n_history  # (T,)

    # Eq. 5 scores masked inputs only, so not the visible t = 0 anchor (the official code averages it in)
    history = _masked_mse(pred["slots"], slots, mask & ~future[None, :, None])
    future_slots = _masked_mse(pred["slots"], slots, future[None, :, None].expand_as(mask))
    if proprio is None:
        proprio_term = torch.zeros((), device=slots.device)
    else:
        if pred["proprio"].shape != proprio.shape:
            expected = tuple(pred["proprio"].shape)
            raise ValueError(f"expected target proprio of shape {expected}, got {tuple(proprio.shape)}")
        proprio_term = _masked_mse(pred["proprio"], proprio, future[None, :].expand(proprio.shape[:2]))

    loss = history_weight * history + future_slots + proprio_term
    terms = {"history": history.detach(), "future": future_slots.detach(), "proprio": proprio_term.detach()}
    return loss, terms


def rollout(
    model: Predictor,
    slots: torch.Tensor,
    actions: torch.Tensor | None,
    proprio: torch.Tensor | None,
    n_future: int,
    history: int,
    block: int = 1,
    align: str = "right",
) -> dict:
    """Predict `n_future` frames autoregressively, `block` frames per call of the model.

    slots: (..., T0, S, D) observed slots; actions: (..., T0 + K, A) or None, where actions[..., t]
    is taken at frame t; proprio: (..., T0, P) raw z-scored, or None; K = n_future. Each call
    feeds the last min(history, frames so far) frames, all visible, plus `block` hidden frames to
    predict (fewer at the end): from one observed frame the context grows with predicted frames
    up to `history`. Use the block the model was trained to predict (its config's n_future): a
    model trained to fill 4 hidden frames at once predicts worse when asked for one at a time.
    align: "right" (as in training and the paper's planner: the newest frame of a window takes
    time position model.n_history - 1) or "left" (a window starts at position 0; ours, earlier).
    Leading axes (e.g. episodes x candidates) are flattened into the batch. Runs under the
    caller's grad mode and train / eval mode.
    Returns {"slots": (..., K, S, D), "proprio": (..., K, P') or None}: the predicted proprio in
    the model's proprio_space (model.proprio_features of the raw proprio is comparable to it).
    """
    if align not in ("right", "left"):
        raise ValueError(f"expected align 'right' or 'left', got {align!r}")
    if align == "right" and history > model.n_history:
        raise ValueError(f"a right-aligned rollout keeps at most the model's n_history = {model.n_history} "
                         f"frames of context, got history = {history}")
    if n_future < 1:
        raise ValueError(f"expected n_future >= 1, got {n_future}")
    if block < 1:
        raise ValueError(f"expected block >= 1, got {block}")
    if not 1 <= history <= model.max_frames - block:
        raise ValueError(f"expected 1 <= history <= max_frames - block = {model.max_frames - block}, "
                         f"got {history}")
    if slots.ndim < 3:
        raise ValueError(f"expected slots of shape (..., T0, S, D), got {tuple(slots.shape)}")
    lead = slots.shape[:-3]
    T0 = slots.shape[-3]
    slots, packed = einops.pack([slots], "* t s d")  # (B, T0, S, D)
    if actions is not None:
        if actions.shape[:-1] != (*lead, T0 + n_future):
            expected = (*lead, T0 + n_future, model.action_dim)
            raise ValueError(f"expected actions of shape {expected}, got {tuple(actions.shape)}")
        actions, _ = einops.pack([actions], "* t a")  # (B, T0 + K, A)
    if proprio is not None:
        if proprio.shape[:-1] != (*lead, T0):
            expected = (*lead, T0, model.proprio_dim)
            raise ValueError(f"expected proprio of shape {expected}, got {tuple(proprio.shape)}")
        proprio, _ = einops.pack([proprio], "* t p")  # (B, T0, P)
        embedded = model.proprio_space == "embedding"
        proprio = model.proprio_features(proprio)  # (B, T0, P'): fed back as it is predicted

    B, _, S, D = slots.shape
    while slots.shape[1] < T0 + n_future:
        now = slots.shape[1]  # frames known so far; predict frames now .. now + k - 1
        k = min(block, T0 + n_future - now)
        start = max(0, now - history)
        window = torch.cat([slots[:, start:], slots.new_zeros(B, k, S, D)], dim=1)  # (B, W + k, S, D)
        W = now - start
        mask = torch.zeros(B, W + k, S, dtype=torch.bool, device=slots.device)
        mask[:, W:] = True
        act = None if actions is None else actions[:, start : now + k]  # (B, W + k, A)
        prop = None
        if proprio is not None:
            prop = torch.cat([proprio[:, start:], proprio.new_zeros(B, k, proprio.shape[-1])], dim=1)
        offset = model.n_history - W if align == "right" else 0
        out = model(window, mask, act, prop, n_history=W, time_offset=offset,
                    proprio_embedded=proprio is not None and embedded)
        slots = torch.cat([slots, out["slots"][:, W:]], dim=1)  # (B, now + k, S, D)
        if proprio is not None:
            proprio = torch.cat([proprio, out["proprio"][:, W:]], dim=1)  # (B, now + k, P)

    result = {"slots": einops.unpack(slots[:, T0:], packed, "* k s d")[0], "proprio": None}
    if proprio is not None:
        result["proprio"] = einops.unpack(proprio[:, T0:], packed, "* k p")[0]
    return result
