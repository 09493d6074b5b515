"""Object-centric slot encoders: the frozen encoder that turns each frame into S slots.

C-JEPA never trains its encoder: it reads slots from a video slot model trained beforehand
(FACTS.md sections 2 and 6). This file holds that model and the tools around it:
- `SlotAttention`: Locatello et al. 2020, Algorithm 1. Slots compete for inputs (softmax
  over the SLOT axis), then each slot takes the attention-weighted mean of the inputs and
  is updated by a GRU (and optionally a residual MLP).
- `SlotEncoder`: the video model (SAVi / VideoSAUR). Frame 0 starts from a learned
  initialisation (noisy, or fixed queries: `--slot-init`); frame t+1 starts from a
  transformer block applied to frame t's slots, so slot k keeps following the same object
  across the clip. Two backbones: "cnn" (small CNN, pixels reconstructed by a spatial
  broadcast decoder, or by slot attention's own masks painting one colour per slot:
  `AttentionDecoder`) and "dinov2" (frozen DINOv2 ViT-S/14 patch features reconstructed as
  VideoSAUR does, with its decoders and temporal-similarity loss from ``videosaur.py``).
The masks' scores (FG-ARI, mBO) and descriptions are in ``masks.py``; the C-JEPA release's
slot pickles are read by ``files.load_official_slots``.
"""

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from dinov2 import DinoV2, load_dinov2, normalize_imagenet
from masks import mask_spread, position_grid
from videosaur import FeatureDecoder, SlotMixerDecoder, time_similarity


def norm_mlp(d_in, d_hidden, d_out):
    """LayerNorm -> Linear -> ReLU -> Linear, applied to the last axis."""
    return nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class SlotAttention(nn.Module):
    """Iterative slot attention: inputs (B, N, Din) -> slots (B, S, D), attention (B, S, N)."""

    def __init__(self, dim, n_slots, n_iters, input_dim, hidden_dim, eps=1e-8, use_mlp=True, init="noise"):
        super().__init__()
        if init not in ("noise", "query"):
            raise ValueError(f"expected init 'noise' or 'query', got {init!r}")
        self.dim, self.n_slots, self.n_iters, self.input_dim, self.eps = dim, n_slots, n_iters, input_dim, eps
        # init="noise" (Locatello et al.): mu + sigma * noise. init="query" (BO-QSA, Jia et
        # al. 2023): the learned means alone, and in training the last iteration starts
        # from the detached slots plus a straight-through path to the initial slots, so the
        # gradient reaches the queries directly instead of through every iteration.
        self.init = init
        self.scale = dim**-0.5
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.norm_slots = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(input_dim, dim, bias=False)
        self.to_v = nn.Linear(input_dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = None
        if use_mlp:
            self.mlp = norm_mlp(dim, hidden_dim, dim)
        # One learned mean per slot (so slots differ even without noise) and a shared spread.
        self.mu = nn.Parameter(torch.randn(1, n_slots, dim) * dim**-0.5)
        if init == "noise":  # (a parameter no loss uses would stall DDP)
            self.log_sigma = nn.Parameter(torch.full((1, 1, dim), -2.0))

    def init_slots(self, batch_size, generator=None, noise=True):
        """Initial slots (B, S, D) = mu + exp(log_sigma) * eps, eps ~ N(0, 1) drawn from `generator`
        (init="query": mu)."""
        mu = self.mu.expand(batch_size, -1, -1)
        if not noise or self.init == "query":
            return mu
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + self.log_sigma.exp() * eps

    def forward(self, inputs, slots=None, n_iters=None, generator=None):
        """inputs (B, N, Din), slots (B, S, D) or None (learned init) -> slots (B, S, D), attn (B, S, N).

        `attn` is the last iteration's attention, a distribution over slots for every input.
        """
        if inputs.ndim != 3 or inputs.shape[-1] != self.input_dim:
            raise ValueError(f"expected inputs of shape (B, N, {self.input_dim}), got {tuple(inputs.shape)}")
        B = inputs.shape[0]
        if slots is None:
            slots = self.init_slots(B, generator)
        if slots.ndim != 3 or slots.shape[0] != B or slots.shape[-1] != self.dim:
            raise ValueError(f"expected slots of shape ({B}, S, {self.dim}), got {tuple(slots.shape)}")
        n_iters = self.n_iters if n_iters is None else n_iters
        if n_iters < 1:
            raise ValueError(f"expected at least 1 iteration, got {n_iters}")
        inputs = self.norm_inputs(inputs)
        # Locatello et al.'s k = W_k x and v = W_v x are linear in the inputs, so the projections
        # move to the slot side: q . (W_k x) = (q W_k) . x and sum_n w_n W_v x_n = W_v (sum_n w_n x_n).
        # The same numbers without ever forming k and v (B, N, D): projecting N inputs costs
        # 2 N Din D, projecting S slots 2 S Din D per iteration (S = 4 against N = 1,024 on the
        # CPU preset).
        init = slots
        for i in range(n_iters):
            if self.init == "query" and self.training and i == n_iters - 1:
                slots = slots.detach() + init - init.detach()  # same value, gradient to init
            q = self.to_q(self.norm_slots(slots))  # (B, S, D)
            q_in = q @ self.to_k.weight  # (B, S, Din): the query in input space
            logits = q_in @ inputs.transpose(1, 2) * self.scale  # (B, S, N)
            attn = logits.softmax(dim=1)  # slots compete for each input
            weights = (attn + self.eps) / (attn + self.eps).sum(dim=-1, keepdim=True)  # mean over inputs
            updates = self.to_v(weights @ inputs)  # (B, S, D)
            slots = self.gru(rearrange(updates, "b s d -> (b s) d"), rearrange(slots, "b s d -> (b s) d"))
            slots = rearrange(slots, "(b s) d -> b s d", b=B)
            if self.mlp is not None:
                slots = slots + self.mlp(slots)
        return slots, attn


class SoftPositionEmbedding(nn.Module):
    """Adds Linear([x, y, 1-x, 1-y]) to channel-last features (..., h, w, D)."""

    def __init__(self, dim, h, w):
        super().__init__()
        self.proj = nn.Linear(4, dim)
        self.register_buffer("grid", position_grid(h, w), persistent=False)

    def forward(self, x):
        return x + self.proj(self.grid)


class CNNBackbone(nn.Module):
    """Frames (B, 3, H, W) -> features (B, N, out_dim), N = H*W (or H*W/4 with a stride-2 first conv).

    full_res (ours, with stride2_first): the stride-2 features are upsampled back to H x W and
    joined with a 3x3 convolution of the pixels themselves, so N = H*W at about the cost of
    the stride-2 network. Slot attention then assigns every pixel, not every 2 x 2 cell: on
    Push-T at 64 px the T's bar is under 4 pixels wide and the agent a disc of radius 2.
    """

    def __init__(self, image_size, channels=64, out_dim=64, stride2_first=False, full_res=False,
                 pixel_channels=16):
        super().__init__()
        if full_res and not stride2_first:
            raise ValueError("full_res joins upsampled stride-2 features with the pixels: it needs stride2_first")
        layers, c_in = [], 3
        for i in range(4):
            stride = 2 if (i == 0 and stride2_first) else 1
            layers += [nn.Conv2d(c_in, channels, 5, stride=stride, padding=2), nn.ReLU()]
            c_in = channels
        self.convs = nn.Sequential(*layers)
        self.pixel_conv = None
        if full_res:
            self.pixel_conv = nn.Sequential(nn.Conv2d(3, pixel_channels, 3, padding=1), nn.ReLU())
            c_in = channels + pixel_channels
        self.grid_size = image_size // 2 if stride2_first and not full_res else image_size
        self.pos = SoftPositionEmbedding(c_in, self.grid_size, self.grid_size)
        self.mlp = norm_mlp(c_in, c_in, out_dim)

    def forward(self, frames):
        # channels-last convolutions: faster on CPUs, and the features come out already laid
        # out (b h w c), so the rearrange below copies nothing
        frames = frames.contiguous(memory_format=torch.channels_last)
        x = self.convs(frames)  # (B, C, h, w)
        if self.pixel_conv is not None:  # back to (B, C + pixel_channels, H, W)
            x = F.interpolate(x, size=frames.shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([x, self.pixel_conv(frames)], dim=1)
        x = rearrange(self.pos(rearrange(x, "b c h w -> b h w c")), "b h w c -> b (h w) c")  # (B, N, C)
        return self.mlp(x)


class BroadcastDecoder(nn.Module):
    """Spatial broadcast decoder: slots (B, S, D) -> image, per-slot RGB and masks (softmax over S).

    rgb="pixel" (Locatello et al., FACTS section 6): the convolutions paint RGB and alpha at
    every pixel. rgb="slot", a departure of ours for the CPU preset: they paint only alpha
    and each slot has one colour, an MLP of the slot.
    A slot can then no longer paint the whole scene, which on flat-coloured worlds with
    few degrees of freedom (Push-T: 5 numbers) is what keeps the slots alike: every slot
    learns to draw everything and the masks stay uniform for thousands of steps.
    """

    def __init__(self, slot_dim, image_size, channels=64, rgb="pixel"):
        super().__init__()
        n_up = (image_size // 8).bit_length() - 1
        if image_size % 8 or image_size != 8 * 2**n_up or n_up < 1:
            raise ValueError(f"expected image_size = 8 * 2^k with k >= 1 (16, 32, 64, 128, ...), got {image_size}")
        if rgb not in ("pixel", "slot"):
            raise ValueError(f"expected rgb 'pixel' or 'slot', got {rgb!r}")
        self.rgb = rgb
        self.pos = SoftPositionEmbedding(slot_dim, 8, 8)
        layers, c_in = [], slot_dim
        for _ in range(n_up):
            layers += [nn.ConvTranspose2d(c_in, channels, 5, stride=2, padding=2, output_padding=1), nn.ReLU()]
            c_in = channels
        n_out = 4 if rgb == "pixel" else 1
        layers += [nn.Conv2d(channels, channels, 5, padding=2), nn.ReLU(), nn.Conv2d(channels, n_out, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        if rgb == "slot":
            self.colour = nn.Sequential(nn.Linear(slot_dim, slot_dim), nn.ReLU(), nn.Linear(slot_dim, 3))

    def forward(self, slots):
        """slots (B, S, D) -> recon (B, 3, H, W), rgb (B, S, 3, H, W), masks (B, S, 1, H, W)."""
        B = slots.shape[0]
        x = self.pos(repeat(slots, "b s d -> (b s) h w d", h=8, w=8))  # (B*S, 8, 8, D)
        out = self.net(rearrange(x, "bs h w d -> bs d h w"))  # (B*S, 4 or 1, H, W)
        out = rearrange(out, "(b s) c h w -> b s c h w", b=B)
        if self.rgb == "pixel":
            rgb, logits = out[:, :, :3], out[:, :, 3:]
        else:
            rgb, logits = self.colour(slots)[..., None, None].expand(-1, -1, -1, *out.shape[-2:]), out
        masks = logits.softmax(dim=1)  # alpha competes across slots
        return (rgb * masks).sum(dim=1), rgb, masks


class AttentionDecoder(nn.Module):
    """Slot-attention masks as the alpha masks (ours, the Push-T CPU preset): slots (B, S, D) and
    their last attention (B, S, N) -> image sum_k attn_k * colour_k, per-slot RGB and masks.

    Each slot paints one colour (an MLP of the slot) over exactly the pixels it attended to,
    so the reconstruction loss trains the assignment of pixels to slots itself, as a soft
    k-means of the frame's colours. A spatial broadcast decoder must first learn to draw a
    turned T from a slot vector before its masks can say where the block is; on the CPU
    budget it draws a blob over block and agent (docs/encoder.md), and its gradient keeps
    the attention from splitting them.
    """

    def __init__(self, slot_dim, grid_size):
        super().__init__()
        self.grid_size = grid_size
        self.colour = nn.Sequential(nn.Linear(slot_dim, slot_dim), nn.ReLU(), nn.Linear(slot_dim, 3))

    def forward(self, slots, attn):
        """slots (B, S, D), attn (B, S, h*w) -> recon (B, 3, h, w), rgb (B, S, 3, h, w), masks (B, S, 1, h, w)."""
        masks = rearrange(attn, "b s (h w) -> b s 1 h w", h=self.grid_size)  # already sums to 1 over S
        rgb = self.colour(slots)[..., None, None].expand(-1, -1, -1, self.grid_size, self.grid_size)
        return (rgb * masks).sum(dim=1), rgb, masks


class SlotTransition(nn.Module):
    """One pre-LN transformer block over slots: slots of frame t (B, S, D) -> initial slots of t+1.

    No position or slot-index embedding, so it is permutation-equivariant: slot k stays slot k.
    """

    def __init__(self, dim, n_heads=4, mlp_ratio=4):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"expected slot_dim divisible by {n_heads} heads, got {dim}")
        self.n_heads = n_heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, slots):
        q, k, v = rearrange(self.qkv(self.norm1(slots)), "b s (three h e) -> three b h s e", three=3, h=self.n_heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, S, D/heads)
        slots = slots + self.proj(rearrange(out, "b h s e -> b s (h e)"))
        return slots + self.mlp(self.norm2(slots))


class SlotEncoder(nn.Module):
    """Video slot model: frames (B, T, 3, H, W) in [0, 1] -> slots (B, T, S, D).

    backbone="cnn": CNN features, pixel reconstruction (MSE; decoder_rgb and recon_weight
    as in BroadcastDecoder and below) by decoder="broadcast" (BroadcastDecoder) or
    decoder="attention" (AttentionDecoder: the masks are slot attention's own, at the
    feature grid's size; needs decoder_rgb="slot"). backbone="dinov2": frozen
    DINOv2 ViT-S/14 patch features (image_size a multiple of 14, e.g. 196), an MLP
    384 -> 768 -> input_dim with LayerNorm, and DINOv2-feature reconstruction (MSE) by
    decoder="mlp" (FeatureDecoder, the default there) or "mixer" (SlotMixerDecoder), plus
    similarity_weight times the temporal-similarity loss (`time_similarity` at
    similarity_temp; the decoder predicts N more numbers a patch) when it is set.
    `dinov2_weights` is a local `dinov2_vits14_pretrain.pth`; without it the frozen
    backbone keeps its random initialisation, which is only useful for tests.
    """

    def __init__(
        self,
        *,
        backbone="cnn",
        image_size=64,
        n_slots=7,
        slot_dim=128,
        n_iters_first=3,
        n_iters=2,
        input_dim=128,
        slot_mlp=None,
        cnn_channels=64,
        cnn_stride2=False,
        cnn_full_res=False,
        decoder=None,
        decoder_channels=64,
        decoder_size=None,
        decoder_hidden=1024,
        decoder_rgb="pixel",
        recon_weight=0.0,
        position_weight=0.0,
        slot_init="noise",
        similarity_weight=0.0,
        similarity_temp=0.15,
        dinov2_weights=None,
    ):
        super().__init__()
        if backbone not in ("cnn", "dinov2"):
            raise ValueError(f"expected backbone 'cnn' or 'dinov2', got {backbone!r}")
        self.backbone, self.image_size = backbone, image_size
        self.n_iters_first, self.n_iters = n_iters_first, n_iters
        use_mlp = backbone == "cnn" if slot_mlp is None else slot_mlp  # VideoSAUR: GRU only
        self.slot_attention = SlotAttention(slot_dim, n_slots, n_iters_first, input_dim, 2 * slot_dim,
                                            use_mlp=use_mlp, init=slot_init)
        self.transition = SlotTransition(slot_dim)
        self.similarity_weight, self.similarity_temp = similarity_weight, similarity_temp  # dinov2 only
        if backbone == "cnn":
            self.cnn = CNNBackbone(image_size, cnn_channels, input_dim, cnn_stride2, cnn_full_res)
            decoder = decoder or "broadcast"
            if decoder == "broadcast":
                self.decoder_size = decoder_size or image_size
                self.decoder = BroadcastDecoder(slot_dim, self.decoder_size, decoder_channels, decoder_rgb)
            elif decoder == "attention":
                if decoder_rgb != "slot":
                    raise ValueError(f"the attention decoder paints one colour per slot: it needs decoder_rgb "
                                     f"'slot', got {decoder_rgb!r}")
                self.decoder_size = self.cnn.grid_size
                self.decoder = AttentionDecoder(slot_dim, self.decoder_size)
            else:
                raise ValueError(f"expected decoder 'broadcast' or 'attention', got {decoder!r}")
            if position_weight and decoder != "attention":
                raise ValueError(f"position_weight needs the attention decoder (its masks are slot attention's), "
                                 f"got decoder {decoder!r}")
            self.recon_weight, self.position_weight = recon_weight, position_weight
            # Frames are centred on the data's mean colour before the CNN and the decoder
            # predicts centred colours: with a bright background left at 1, the slots stay
            # alike (no object is ever singled out) for thousands of steps.
            self.register_buffer("pixel_mean", torch.full((3,), 0.5))
            # The loss weights pixel p by 1 + recon_weight * |frame(p) - background| (RGB
            # distance to the data's background colour, set by the trainer; not saved):
            # the moving objects of Push-T are under 3 % of the pixels and otherwise are
            # the last thing the decoder learns to draw.
            self.register_buffer("background", torch.ones(3), persistent=False)
        else:
            if image_size % 14:
                raise ValueError(f"expected an image_size that is a multiple of 14 for dinov2, got {image_size}")
            self.grid_size = image_size // 14
            self.dinov2 = (load_dinov2(dinov2_weights) if dinov2_weights else DinoV2()).requires_grad_(False).eval()
            dim = self.dinov2.dim
            self.feature_mlp = norm_mlp(dim, 2 * dim, input_dim)  # 384 -> 768 -> input_dim
            n_patches = self.grid_size**2  # the decoder's similarity logits follow the features
            decoders, decoder = {"mlp": FeatureDecoder, "mixer": SlotMixerDecoder}, decoder or "mlp"
            if decoder not in decoders:
                raise ValueError(f"expected decoder 'mlp' or 'mixer' for dinov2, got {decoder!r}")
            self.decoder = decoders[decoder](slot_dim, dim + (n_patches if similarity_weight else 0), n_patches,
                                             decoder_hidden)

    def train(self, mode=True):
        """Switch train/eval mode; the frozen DINOv2 backbone always stays in eval mode."""
        super().train(mode)
        if self.backbone == "dinov2":
            self.dinov2.eval()
        return self

    def _check_frames(self, frames):
        size = self.image_size
        if frames.ndim != 5 or tuple(frames.shape[2:]) != (3, size, size) or not frames.is_floating_point():
            raise ValueError(
                f"expected float frames of shape (B, T, 3, {size}, {size}), got {tuple(frames.shape)} {frames.dtype}"
            )

    def _features(self, frames, keys=False):
        """frames (B, T, 3, H, W) -> slot-attention inputs (B, T, N, Din) and the targets: None
        (cnn), or [DINOv2's features (B, T, N, 384)], with its last keys after them when ``keys``."""
        B = frames.shape[0]
        flat = rearrange(frames, "b t c h w -> (b t) c h w")
        if self.backbone == "cnn":
            centred = flat - self.pixel_mean[:, None, None]
            return rearrange(self.cnn(centred), "(b t) n d -> b t n d", b=B), None
        with torch.no_grad():
            out = self.dinov2.forward_features(normalize_imagenet(flat), keys=keys)
        targets = [rearrange(x, "(b t) n d -> b t n d", b=B) for x in (out if keys else [out])]
        return self.feature_mlp(targets[0]), targets

    def _encode(self, frames, generator=None, noise=True, keys=False, start=None):
        self._check_frames(frames)
        inputs, targets = self._features(frames, keys)  # (B, T, N, Din); keys only for the loss
        all_slots, all_attn = [], []
        slots = None
        for t in range(frames.shape[1]):
            if t == 0:
                init = self.slot_attention.init_slots(frames.shape[0], generator, noise) if start is None else start
                n_iters = self.n_iters_first
            else:
                init, n_iters = self.transition(slots), self.n_iters
            slots, attn = self.slot_attention(inputs[:, t], init, n_iters=n_iters)
            all_slots.append(slots)
            all_attn.append(attn)
        return torch.stack(all_slots, dim=1), torch.stack(all_attn, dim=1), targets  # (B, T, S, D), (B, T, S, N)

    def encode(self, frames, generator=None, noise=True, start=None):
        """frames (B, T, 3, H, W) in [0, 1] -> {'slots': (B, T, S, D), 'attn': (B, T, S, N)}.

        `generator` draws frame 0's initial noise; noise=False starts from the learned means.
        `start` (B, S, D): frame 0 starts from these slots instead, no transition between (the
        official planner encodes its goal so, from the observed frame's slots).
        """
        slots, attn, _ = self._encode(frames, generator, noise, start=start)
        return {"slots": slots, "attn": attn}

    def forward(self, frames, generator=None, recon_weight=None):
        """frames (B, T, 3, H, W) in [0, 1] -> dict with 'slots' (B, T, S, D), 'attn' (B, T, S, N),
        'recon', 'masks', 'loss'. ``recon_weight`` (CNN) overrides the model's for this call.

        cnn: recon (B, T, 3, h, w), masks (B, T, S, h, w) with h = w = decoder_size (broadcast:
        the frame size unless set; attention: the feature grid's size), 'mse' = pixel MSE
        against the frames averaged down to h x w,
        loss = that MSE with each pixel weighted as set by recon_weight (the MSE when 0), plus
        position_weight times 'place' = mask_spread(masks, |frame - background|) when set.
        dinov2: recon (B, T, N, 384), masks (B, T, S, h, w) over the h x w patch grid,
        'features' (B, T, N, 384) the DINOv2 targets, 'mse' the feature MSE, loss = that MSE,
        plus similarity_weight times 'similarity' (the cross-entropy of frames 0..T-2's
        predicted rows against `time_similarity`) when it is set.
        """
        slots, attn, targets = self._encode(frames, generator, keys=bool(self.similarity_weight))
        B = frames.shape[0]
        flat = rearrange(slots, "b t s d -> (b t) s d")
        out = {"slots": slots, "attn": attn}
        if self.backbone == "cnn":
            if isinstance(self.decoder, AttentionDecoder):
                recon, _, masks = self.decoder(flat, rearrange(attn, "b t s n -> (b t) s n"))
            else:
                recon, _, masks = self.decoder(flat)  # (B*T, 3, h, w), (B*T, S, 1, h, w) at decoder_size
            recon = recon + self.pixel_mean[:, None, None]
            out["recon"] = rearrange(recon, "(b t) c h w -> b t c h w", b=B)
            out["masks"] = rearrange(masks, "(b t) s 1 h w -> b t s h w", b=B)
            target = frames
            if self.decoder_size != self.image_size:  # compare with the frames averaged down
                small = F.interpolate(rearrange(frames, "b t c h w -> (b t) c h w"),
                                      size=(self.decoder_size, self.decoder_size), mode="area")
                target = rearrange(small, "(b t) c h w -> b t c h w", b=B)
            out["mse"] = F.mse_loss(out["recon"], target)
            out["loss"] = out["mse"]
            recon_weight = self.recon_weight if recon_weight is None else recon_weight
            if recon_weight or self.position_weight:  # each pixel's RGB distance from the background
                distance = (target - self.background[:, None, None]).norm(dim=2)  # (B, T, h, w)
            if recon_weight:
                out["loss"] = ((1 + recon_weight * distance[:, :, None]) * (out["recon"] - target) ** 2).mean()
            if self.position_weight:
                out["place"] = mask_spread(out["masks"], distance)
                out["loss"] = out["loss"] + self.position_weight * out["place"]
        else:
            recon, masks = self.decoder(flat)  # (B*T, N, 384 [+ N]), (B*T, S, N)
            recon = rearrange(recon, "(b t) n d -> b t n d", b=B)
            features = targets[0]
            out["recon"] = recon[..., :features.shape[-1]]
            out["masks"] = rearrange(masks, "(b t) s (h w) -> b t s h w", b=B, h=self.grid_size)
            out["features"] = features
            out["mse"] = out["loss"] = F.mse_loss(out["recon"], features)
            if self.similarity_weight:
                logits = recon[:, :-1, :, features.shape[-1]:].float()  # frame t's rows, t < T - 1
                target = time_similarity(targets[1], self.similarity_temp)
                out["similarity"] = -(target * logits.log_softmax(-1)).sum(-1).mean()
                out["loss"] = out["loss"] + self.similarity_weight * out["similarity"]
        return out
