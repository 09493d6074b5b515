"""Tests for dinov2.py: checkpoint layout, loading errors, position grid, parity with timm."""

import pytest
import torch

from dinov2 import DinoV2, load_dinov2


def randomised_model(seed=0):
    """A DinoV2 whose every parameter is drawn from a seeded generator (norm weights near 1)."""
    g = torch.Generator().manual_seed(seed)
    model = DinoV2().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            centre = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(centre + 0.1 * torch.randn(p.shape, generator=g))
    return model


def expected_layout():
    """Key -> shape of the released dinov2_vits14_pretrain.pth."""
    d, h = 384, 4 * 384
    layout = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1370, d),
        "mask_token": (1, d),
        "patch_embed.proj.weight": (d, 3, 14, 14),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    for i in range(12):
        layout |= {
            f"blocks.{i}.norm1.weight": (d,),
            f"blocks.{i}.norm1.bias": (d,),
            f"blocks.{i}.attn.qkv.weight": (3 * d, d),
            f"blocks.{i}.attn.qkv.bias": (3 * d,),
            f"blocks.{i}.attn.proj.weight": (d, d),
            f"blocks.{i}.attn.proj.bias": (d,),
            f"blocks.{i}.ls1.gamma": (d,),
            f"blocks.{i}.norm2.weight": (d,),
            f"blocks.{i}.norm2.bias": (d,),
            f"blocks.{i}.mlp.fc1.weight": (h, d),
            f"blocks.{i}.mlp.fc1.bias": (h,),
            f"blocks.{i}.mlp.fc2.weight": (d, h),
            f"blocks.{i}.mlp.fc2.bias": (d,),
            f"blocks.{i}.ls2.gamma": (d,),
        }
    return layout


def test_state_dict_matches_released_layout():
    got = {k: tuple(v.shape) for k, v in DinoV2().state_dict().items()}
    assert got == expected_layout()


def test_checkpoint_round_trip(tmp_path):
    model = randomised_model()
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(model.state_dict(), path)
    loaded = load_dinov2(str(path))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    images = torch.randn(1, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model.forward_features(images), loaded.forward_features(images)
    assert got.shape == (1, 8 * 8, 384)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_bad_checkpoints_name_the_key(tmp_path):
    state = DinoV2().state_dict()
    missing = {k: v for k, v in state.items() if k != "blocks.3.ls1.gamma"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing keys: \['blocks\.3\.ls1\.gamma'\]"):
        load_dinov2(str(tmp_path / "missing.pth"))
    wrong = dict(state, pos_embed=torch.zeros(1, 257, 384))
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"pos_embed: expected \(1, 1370, 384\), got \(1, 257, 384\)"):
        load_dinov2(str(tmp_path / "wrong.pth"))
    extra = dict(state, **{"head.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unexpected keys: \['head\.weight'\]"):
        load_dinov2(str(tmp_path / "extra.pth"))


def test_position_embedding_resizing():
    model = randomised_model()
    assert model.position_embedding(37, 37) is model.pos_embed
    resized = model.position_embedding(14, 14)
    assert resized.shape == (1, 1 + 14 * 14, 384)
    torch.testing.assert_close(resized[:, 0], model.pos_embed[:, 0])
    with torch.no_grad():
        model.pos_embed.fill_(0.5)
    torch.testing.assert_close(model.position_embedding(14, 10), torch.full((1, 141, 384), 0.5))


def test_rejects_images_not_multiple_of_patch():
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\) with H and W multiples of 14"):
        DinoV2().forward_features(torch.zeros(1, 3, 200, 196))


def test_parity_with_timm():
    timm = pytest.importorskip("timm")
    ours = randomised_model()
    theirs = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518).eval()
    theirs.load_state_dict({k: v for k, v in ours.state_dict().items() if k != "mask_token"}, strict=True)
    images = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = theirs.forward_features(images)[:, 1:]  # drop the class token
        got = ours.forward_features(images)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_keys_are_the_last_blocks_attention_keys_and_leave_the_tokens_unchanged():
    torch.manual_seed(0)
    model = DinoV2(dim=48, depth=2, n_heads=3).eval()   # small: the keys' place, not the released sizes
    images = torch.randn(2, 3, 28, 42, generator=torch.Generator().manual_seed(3))
    seen = []  # the last block's qkv output, as its attention splits it: (q, k, v), heads in order
    handle = model.blocks[-1].attn.qkv.register_forward_hook(lambda module, inputs, output: seen.append(output))
    with torch.no_grad():
        tokens, keys = model.forward_features(images, keys=True)
        plain = model.forward_features(images)
    handle.remove()
    assert keys.shape == tokens.shape == (2, 6, 48)
    torch.testing.assert_close(tokens, plain)
    _, k, _ = seen[-1].chunk(3, dim=-1)
    torch.testing.assert_close(keys, k[:, 1:])   # the class token dropped
