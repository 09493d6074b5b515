"""A minimal, frozen DINOv2 ViT-S/14 feature extractor (the VideoSAUR encoder's backbone).

C-JEPA's CLEVRER slots come from VideoSAUR, which reads frozen DINOv2 ViT-S/14 patch
features at 196 px (14 x 14 = 196 patches of 384 features; FACTS.md section 2). This file
holds only what that needs: a plain pre-LN vision transformer whose `state_dict` keys and
shapes match the released `dinov2_vits14_pretrain.pth`, so the real weights load as they
are, and `forward_features`, which returns the patch tokens after the final LayerNorm.

Two things a reader must know:
- The released weights were trained at 518 px, so `pos_embed` holds 37 x 37 patch
  positions (+1 for the class token). For another input size the 37 x 37 grid is resized
  bicubically (no antialiasing) to the input's patch grid. DINOv2 does this with a scale
  factor of (n + 0.1) / 37 rather than the target size n: the output still has n x n
  positions, but PyTorch samples the source grid with the given scale factor, so the
  values differ slightly from a plain `size=(n, n)` resize. We do the same, so features
  match the released model's at any resolution.
- `mask_token` is part of the checkpoint (it was used during pre-training) and is kept
  so the keys match, but feature extraction never uses it.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from files import load_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POS_EMBED_OFFSET = 0.1  # DINOv2's scale-factor offset for resizing position embeddings


def normalize_imagenet(images: torch.Tensor) -> torch.Tensor:
    """Map images in [0, 1] of shape (..., 3, H, W) to ImageNet-normalised values."""
    if images.ndim < 3 or images.shape[-3] != 3:
        raise ValueError(f"expected images of shape (..., 3, H, W), got {tuple(images.shape)}")
    mean = images.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (images - mean) / std


class PatchEmbed(nn.Module):
    """Non-overlapping patch x patch convolution: (B, 3, H, W) -> (B, N, D), N = (H/p)(W/p)."""

    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(images), "b d h w -> b (h w) d")


class Attention(nn.Module):
    """Multi-head self-attention over tokens (B, N, D) with a fused qkv projection."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.n_heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, D/heads), scale e^-0.5
        return self.proj(rearrange(out, "b h n e -> b n (h e)"))


class LayerScale(nn.Module):
    """Learned per-feature scale on a residual branch: x * gamma."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 feed-forward network."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block with LayerScale on both residual branches."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: int, layerscale_init: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, n_heads)
        self.ls1 = LayerScale(dim, layerscale_init)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio * dim)
        self.ls2 = LayerScale(dim, layerscale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2(nn.Module):
    """DINOv2 ViT-S/14: 384 features, 12 blocks, 6 heads, MLP ratio 4, 1 class token.

    The defaults are the released ViT-S/14; `pretrain_grid` is the side of the position
    grid the weights were trained with (518 px / 14 = 37).
    """

    def __init__(
        self,
        dim: int = 384,
        depth: int = 12,
        n_heads: int = 6,
        mlp_ratio: int = 4,
        patch_size: int = 14,
        pretrain_grid: int = 37,
        layerscale_init: float = 1e-5,
    ):
        super().__init__()
        self.dim = dim
        self.patch_size = patch_size
        self.pretrain_grid = pretrain_grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pretrain_grid**2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.blocks = nn.ModuleList(Block(dim, n_heads, mlp_ratio, layerscale_init) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings for an h x w patch grid, class token first: (1, 1 + h*w, D)."""
        m = self.pretrain_grid
        if (h, w) == (m, m):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid = rearrange(patch_pos.float(), "1 (h w) d -> 1 d h w", h=m, w=m)
        scale = ((h + POS_EMBED_OFFSET) / m, (w + POS_EMBED_OFFSET) / m)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)  # (1, D, h, w)
        if grid.shape[-2:] != (h, w):
            raise RuntimeError(f"position grid resized to {tuple(grid.shape[-2:])}, expected {(h, w)}")
        patch_pos = rearrange(grid, "1 d h w -> 1 (h w) d").to(self.pos_embed.dtype)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward_features(self, images: torch.Tensor, keys: bool = False):
        """ImageNet-normalised images (B, 3, H, W), H and W multiples of 14 -> patch tokens (B, N, D).

        N = (H / 14) * (W / 14), row-major over the patch grid; tokens are taken after the
        final LayerNorm, class token dropped. keys=True also returns the last block's attention
        keys of the patches, (B, N, D) over all heads (VideoSAUR's similarity target).
        """
        p = self.patch_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % p or images.shape[3] % p:
            raise ValueError(
                f"expected images of shape (B, 3, H, W) with H and W multiples of {p}, got {tuple(images.shape)}"
            )
        h, w = images.shape[2] // p, images.shape[3] // p
        x = self.patch_embed(images)  # (B, N, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        x = x + self.position_embedding(h, w)
        for block in self.blocks[:-1]:
            x = block(x)
        last = self.blocks[-1]
        tokens = self.norm(last(x))[:, 1:]  # (B, N, D)
        if not keys:
            return tokens
        return tokens, last.attn.qkv(last.norm1(x))[:, 1:, self.dim:2 * self.dim]  # qkv is (q, k, v) x heads


def check_state_dict(model: nn.Module, state: dict) -> None:
    """Raise a ValueError naming every missing, unexpected or wrongly shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{key}: expected {tuple(expected[key].shape)}, got {tuple(state[key].shape)}"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if wrong:
        problems.append(f"wrong shapes: {wrong}")
    if problems:
        raise ValueError("checkpoint does not match DINOv2 ViT-S/14: " + "; ".join(problems))


def load_dinov2(path: str, map_location: str | torch.device = "cpu") -> DinoV2:
    """Load a local `dinov2_vits14_pretrain.pth`-layout checkpoint into a frozen, eval-mode DinoV2.

    The file is read with `torch.load(weights_only=True)`; it must be a flat dict of
    tensors with exactly the keys and shapes of `DinoV2().state_dict()`.
    """
    state = load_weights(path, map_location)
    if not isinstance(state, dict):
        raise ValueError(f"expected {path} to hold a dict of tensors, got {type(state).__name__}")
    model = DinoV2()
    check_state_dict(model, state)
    model.load_state_dict(state)
    return model.requires_grad_(False).eval()
