"""VideoSAUR's side of the slot encoder (App. D.1): what it reconstructs and from what.

On frozen DINOv2 patch features (``slots.SlotEncoder`` with backbone "dinov2") the slots of a
frame are decoded back into the frame's features, and, with the temporal-similarity loss, into
where each patch goes next:
- `time_similarity`: the target of that loss, from DINOv2's last attention keys.
- `FeatureDecoder`: an MLP over each slot broadcast to every patch, mixed by alpha masks.
- `SlotMixerDecoder`: the official C-JEPA encoder's decoder (the paper does not name one):
  patch queries read the slots through cross-attention, pick a mix of slots by a softmax over
  them (the masks), and an MLP renders each patch from its mix.
"""

import torch
import torch.nn.functional as F
from einops import einsum
from torch import nn


def time_similarity(keys, temperature):
    """VideoSAUR's temporal-similarity target: DINOv2 keys (B, T, N, D) -> (B, T - 1, N, N).

    Row i of frame t is a distribution over frame t+1's patches: the softmax of
    cos(key_t^i, key_t+1^j) / temperature over the patches j of positive cosine (a row with
    none is uniform). The decoder predicts it from frame t's slots (cross-entropy).
    """
    with torch.autocast(keys.device.type, enabled=False):   # cosines in float32 under bf16 autocast
        keys = F.normalize(keys.float(), dim=-1)
        cos = einsum(keys[:, :-1], keys[:, 1:], "b t i d, b t j d -> b t i j")
    logits = (cos / temperature).masked_fill(cos < 0, float("-inf"))
    return logits.masked_fill((cos < 0).all(-1, keepdim=True), 0.0).softmax(-1)


class FeatureDecoder(nn.Module):
    """MLP decoder (DINOSAUR's): slots (B, S, D) -> features (B, N, Dfeat) and masks (B, S, N)
    (softmax over S).

    Each slot is broadcast to the N patch positions, a learned position embedding is added
    and a shared MLP predicts Dfeat features plus one alpha logit per position.
    """

    def __init__(self, slot_dim, feat_dim, n_patches, hidden_dim=1024, n_layers=4):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 1, n_patches, slot_dim) * 0.02)
        layers, d_in = [], slot_dim
        for _ in range(n_layers - 1):
            layers += [nn.Linear(d_in, hidden_dim), nn.ReLU()]
            d_in = hidden_dim
        self.mlp = nn.Sequential(*layers, nn.Linear(d_in, feat_dim + 1))

    def forward(self, slots):
        x = slots.unsqueeze(2) + self.pos  # (B, S, N, D)
        out = self.mlp(x)  # (B, S, N, Dfeat + 1)
        feats, masks = out[..., :-1], out[..., -1].softmax(dim=1)  # masks (B, S, N)
        return einsum(feats, masks, "b s n d, b s n -> b n d"), masks



class MixerBlock(nn.Module):
    """Pre-LN cross-attention block: the patch queries (B, N, D) read the slots (B, S, D), then
    an MLP of 4 D (no attention among the patches)."""

    def __init__(self, dim, n_heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim))

    def forward(self, queries, slots):
        queries = queries + self.attn(self.norm1(queries), slots, slots, need_weights=False)[0]
        return queries + self.mlp(self.norm2(queries))


class SlotMixerDecoder(nn.Module):
    """SlotMixer (OSRT; the official VideoSAUR config for Push-T and CLEVRER): slots (B, S, D) ->
    features (B, N, Dfeat) and masks (B, S, N) (softmax over S).

    A learned query per patch reads the (normalised) slots through 3 cross-attention blocks of 4
    heads; its dot product with each slot, softmaxed over the slots, is the patch's mask; the
    mask-weighted mix of the slots plus the patch's query embedding goes through an MLP
    (D -> 1024 -> 1024 -> 1024, ReLU after each) and a linear map to Dfeat.
    """

    def __init__(self, slot_dim, feat_dim, n_patches, hidden_dim=1024, n_blocks=3, n_heads=4):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, n_patches, slot_dim) * slot_dim**-0.5)
        self.norm_memory, self.norm_q, self.norm_k = (nn.LayerNorm(slot_dim) for _ in range(3))
        self.blocks = nn.ModuleList(MixerBlock(slot_dim, n_heads) for _ in range(n_blocks))
        self.to_q, self.to_k = (nn.Linear(slot_dim, slot_dim, bias=False) for _ in range(2))
        self.render = nn.Sequential(nn.Linear(slot_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                    nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                    nn.Linear(hidden_dim, feat_dim))

    def forward(self, slots):
        queries, memory = self.pos.expand(len(slots), -1, -1), self.norm_memory(slots)
        for block in self.blocks:
            queries = block(queries, memory)
        q, k = self.to_q(self.norm_q(queries)), self.to_k(self.norm_k(slots))
        masks = (einsum(q, k, "b n d, b s d -> b s n") * q.shape[-1] ** -0.5).softmax(dim=1)  # (B, S, N)
        mixed = einsum(masks, slots, "b s n, b s d -> b n d") + self.pos
        return self.render(mixed), masks
