import pytest
import torch

from deepfake_ssat.models import MAEDecoder, create_model, list_models, patchify
from deepfake_ssat.models.pos_embed import sincos_grid

# small inputs per registered model (real widths/depths, reduced input so CPU tests stay fast)
SMALL = {
    "vit_tiny_patch16_224": dict(img_size=32, patch_size=16),
    "vit_small_patch16_224": dict(img_size=32, patch_size=16),
    "vit_digits": dict(),
    "vit_test": dict(),
    "videomae_small": dict(img_size=32, num_frames=4),
    "videomae_base": dict(img_size=32, num_frames=4),
    "videomae_test": dict(),
    "swin_tiny_patch4_window7_224": dict(img_size=32),
    "swin_test": dict(),
    "cvt_13": dict(img_size=32),
    "cvt_test": dict(),
    "resnet50": dict(img_size=64),
}


def test_every_registered_model_is_covered():
    assert set(list_models()) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_dtypes_and_contract(name):
    model = create_model(name, num_classes=3, **SMALL[name]).eval()
    video = model.num_frames is not None
    shape = (2, model.in_chans, model.num_frames, model.img_size, model.img_size) if video else \
        (2, model.in_chans, model.img_size, model.img_size)
    x = torch.randn(shape)
    num_tokens = 1
    for g in model.grid_size:
        num_tokens *= g
    with torch.no_grad():
        tokens = model.forward_features(x)
        assert tokens.shape == (2, model.num_prefix_tokens + num_tokens, model.num_features)
        logits = model.forward_head(tokens)
        assert logits.shape == (2, 3) and logits.dtype == torch.float32
        keep = torch.stack([torch.randperm(num_tokens)[: max(num_tokens // 4, 1)] for _ in range(2)])
        visible = model.forward_features(x, keep)
        assert visible.shape == (2, model.num_prefix_tokens + keep.shape[1], model.num_features)
        assert torch.isfinite(visible).all()
    assert isinstance(model.patch_size, int)
    if video:
        assert isinstance(model.tubelet_size, int)


def test_default_video_geometry():
    base = create_model("videomae_base")
    assert base.grid_size == (8, 14, 14) and base.num_features == 768
    assert base.patch_embed.proj.kernel_size == (2, 16, 16)
    small = create_model("videomae_small", num_frames=16, img_size=112, tubelet_size=4, patch_size=8)
    assert small.grid_size == (4, 14, 14) and small.num_features == 384


def test_visible_pass_equals_full_pass_on_all_tokens():
    """Keeping every token in original order must reproduce the full pass (same positions)."""
    model = create_model("videomae_test").eval()
    x = torch.randn(1, 3, 8, 32, 32)
    all_ids = torch.arange(64).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x, all_ids), model.forward_features(x))


def test_video_pos_embed_is_fixed_3d_sincos():
    model = create_model("videomae_test")
    assert "pos_embed" not in dict(model.named_parameters())
    table = sincos_grid(64, model.grid_size)
    assert torch.equal(model.pos_embed[0], table)
    assert len({tuple(r.tolist()) for r in table}) == table.shape[0]  # every position distinct


def test_patchify_matches_manual_patches():
    x = torch.randn(2, 3, 4, 16, 16)  # B, C, T, H, W
    p, ts = 8, 2
    out = patchify(x, p, ts)
    assert out.shape == (2, 2 * 2 * 2, ts * p * p * 3)
    # token (t=1, h=0, w=1) = frames 2:4, rows 0:8, cols 8:16, flattened as (ts, p, p, C)
    manual = x[:, :, 2:4, 0:8, 8:16].permute(0, 2, 3, 4, 1).reshape(2, -1)
    assert torch.equal(out[:, 1 * 4 + 0 * 2 + 1], manual)
    img = torch.randn(1, 3, 8, 8)
    manual = img[:, :, 4:8, 0:4].permute(0, 2, 3, 1).reshape(1, -1)
    assert torch.equal(patchify(img, 4)[:, 2], manual)


def test_decoder_output_and_mask_token():
    dec = MAEDecoder(in_dim=64, grid_size=(2, 4, 4), patch_dim=10, embed_dim=32, depth=2, num_heads=4)
    ids_restore = torch.argsort(torch.rand(3, 32), dim=1)
    pred = dec(torch.randn(3, 8, 64), ids_restore)
    assert pred.shape == (3, 32, 10)
    assert "mask_token" in dec.no_weight_decay()


def test_bad_geometry_is_one_clear_error():
    with pytest.raises(ValueError, match="multiple of"):
        create_model("videomae_test", img_size=30)
