"""Official VideoMAE / MAE checkpoints and our own into the encoders (synthetic, real key layout)."""
import argparse
import warnings

import pytest
import torch

from deepfake_ssat.config import config_from_dict, config_to_dict
from deepfake_ssat.engine.build import build_model
from deepfake_ssat.engine.pretrained import PretrainedError, load_pretrained
from deepfake_ssat.models import create_model
from deepfake_ssat.models import video_vit, vit

D = 64  # width of the *_test models


def randomized(name: str, seed: int, **kwargs) -> torch.nn.Module:
    """A test model whose every weight (LayerNorms included) is random, with zero key bias as in VideoMAE."""
    torch.manual_seed(seed)
    model = create_model(name, **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
        for blk in model.blocks:
            blk.attn.qkv.bias[D:2 * D] = 0
    return model


def to_videomae(model: torch.nn.Module, pretrain: bool = True) -> dict[str, torch.Tensor]:
    """Our VideoViT weights in MCG-NJU's layout: q_bias/v_bias, ``encoder.`` + decoder (pre-training),
    or ``fc_norm``/``head`` without ``norm`` (fine-tuned)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("attn.qkv.bias"):
            q, _, v_bias = v.chunk(3)
            out[k.replace("qkv.bias", "q_bias")] = q.clone()
            out[k.replace("qkv.bias", "v_bias")] = v_bias.clone()
        elif not k.startswith(("fc_norm.", "head.") if pretrain else ("norm.",)):
            out[k] = v.clone()
    if not pretrain:
        return out
    out = {f"encoder.{k}": v for k, v in out.items()}
    patch_dim = 3 * model.tubelet_size * model.patch_size ** 2
    out.update({
        "encoder_to_decoder.weight": torch.randn(32, D),
        "mask_token": torch.randn(1, 1, 32),
        "decoder.blocks.0.attn.q_bias": torch.randn(32),
        "decoder.blocks.0.attn.v_bias": torch.randn(32),
        "decoder.norm.weight": torch.randn(32),
        "decoder.head.weight": torch.randn(patch_dim, 32),
    })
    return out


def clip(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 3, model.num_frames, model.img_size, model.img_size)


def test_videomae_pretrain_reproduces_features_and_drops_decoder():
    ref = randomized("videomae_test", seed=1)
    model = randomized("videomae_test", seed=2)
    ckpt = to_videomae(ref)
    report = load_pretrained(model, ckpt)
    assert report["format"] == "videomae"
    assert sorted(report["missing"]) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert report["unexpected"] == []
    assert report["loaded"] == len(ref.state_dict()) - 4
    assert {"mask_token", "encoder_to_decoder.weight", "decoder.head.weight",
            "decoder.blocks.0.attn.q_bias"} <= set(report["dropped"])
    assert not any(k.startswith("encoder.") for k in report["dropped"])
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(clip(ref)), ref.forward_features(clip(ref)))


def test_videomae_q_k_v_biases_land_in_qkv_bias():
    ckpt = to_videomae(randomized("videomae_test", seed=1))
    model = create_model("videomae_test")
    with torch.no_grad():
        model.blocks[1].attn.qkv.bias.fill_(1.0)  # a k bias that loading must reset to zero
    load_pretrained(model, ckpt)
    bias = model.blocks[1].attn.qkv.bias.detach()
    assert torch.equal(bias[:D], ckpt["encoder.blocks.1.attn.q_bias"])
    assert torch.equal(bias[D:2 * D], torch.zeros(D))
    assert torch.equal(bias[2 * D:], ckpt["encoder.blocks.1.attn.v_bias"])


def test_videomae_filter_is_pure_and_strips_module_prefix():
    ref = randomized("videomae_test", seed=1)
    ckpt = {f"module.{k}": v for k, v in to_videomae(ref).items()}
    keys = set(ckpt)
    out = video_vit.checkpoint_filter_fn(ckpt, create_model("videomae_test"))
    assert set(ckpt) == keys  # input untouched
    assert set(out) == set(ref.state_dict()) - {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}


def test_videomae_finetuned_wrapped_head_of_other_classes_dropped():
    ref = randomized("videomae_test", seed=1, num_classes=400)
    ckpt = {"module": {f"module.{k}": v for k, v in to_videomae(ref, pretrain=False).items()}, "epoch": 3}
    model = create_model("videomae_test", num_classes=2)
    report = load_pretrained(model, ckpt)
    assert sorted(report["dropped"]) == ["module.head.bias", "module.head.weight"]
    assert sorted(report["missing"]) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert model.head.weight.shape == (2, D)
    assert torch.equal(model.fc_norm.weight, ref.fc_norm.weight)
    assert torch.equal(model.norm.weight, torch.ones(D))  # fresh init: fine-tuned VideoMAE has no norm


def test_model_wrapper_and_matching_head_loads():
    ref = randomized("videomae_test", seed=1, num_classes=400)
    model = create_model("videomae_test", num_classes=400)
    report = load_pretrained(model, {"model": to_videomae(ref, pretrain=False)})
    assert report["dropped"] == []
    assert torch.equal(model.head.weight, ref.head.weight)


@pytest.mark.parametrize("kwargs, shapes", [
    ({"tubelet_size": 4}, "(64, 3, 4, 8, 8) does not fit model shape (64, 3, 2, 8, 8)"),
    ({"embed_dim": 32}, "(32, 3, 2, 8, 8) does not fit model shape (64, 3, 2, 8, 8)"),
])
def test_videomae_architecture_mismatch_is_one_line(kwargs, shapes):
    ckpt = to_videomae(create_model("videomae_test", **kwargs))
    model = create_model("videomae_test")
    with pytest.raises(ValueError, match="patch_embed.proj.weight: checkpoint shape") as filt:
        video_vit.checkpoint_filter_fn(ckpt, model)
    assert shapes in str(filt.value)
    with pytest.raises(PretrainedError) as err:
        load_pretrained(model, ckpt)
    assert "\n" not in str(err.value) and "patch_embed.proj.weight" in str(err.value) and shapes in str(err.value)


def test_depth_mismatch_raises_before_loading():
    ckpt = to_videomae(randomized("videomae_test", seed=1, depth=1))
    model = create_model("videomae_test")
    before = model.blocks[0].attn.qkv.weight.clone()
    with pytest.raises(PretrainedError, match=r"lacks \d+ encoder weights \(first: blocks\.1\."):
        load_pretrained(model, ckpt)
    assert torch.equal(model.blocks[0].attn.qkv.weight, before)


def test_file_round_trip_and_official_args_read_weights_only(tmp_path):
    ref = randomized("videomae_test", seed=1)
    plain = tmp_path / "plain.pth"
    torch.save(to_videomae(ref), plain)
    model = create_model("videomae_test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pure state dict loads with weights_only=True
        load_pretrained(model, plain)
    torch.testing.assert_close(model.blocks[1].attn.qkv.weight, ref.blocks[1].attn.qkv.weight)
    official = tmp_path / "official.pth"  # as MCG-NJU saves it: argparse args next to the weights
    torch.save({"model": to_videomae(ref), "args": argparse.Namespace(tubelet_size=2)}, official)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read weights-only too: the Namespace is the one allow-listed type
        assert load_pretrained(create_model("videomae_test"), official)["format"] == "videomae"


def test_unusable_sources_raise_one_line(tmp_path):
    model = create_model("videomae_test")
    with pytest.raises(PretrainedError, match="not found"):
        load_pretrained(model, tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(PretrainedError, match="not a readable checkpoint"):
        load_pretrained(model, junk)
    with pytest.raises(PretrainedError, match="no key matches"):
        load_pretrained(model, {"videomae.embeddings.patch_embeddings.projection.weight": torch.zeros(D, 3, 2, 8, 8)})
    with pytest.raises(PretrainedError, match="holds no tensors"):
        load_pretrained(model, {"epoch": 3})


def test_own_ssat_checkpoint_loads_encoder_and_drops_other_head():
    cfg = config_from_dict({"model": {"name": "videomae_test"}, "data": {"name": "synthetic"},
                            "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 4}, "ssat": {"lam": 0.0}})
    torch.manual_seed(1)
    ssat = build_model(cfg, num_classes=2).eval()
    ckpt = {"model": ssat.state_dict(), "config": config_to_dict(cfg), "epoch": 1}
    model = create_model("videomae_test", num_classes=3)
    report = load_pretrained(model, ckpt)
    assert report["format"] == "deepfake_ssat"
    assert report["missing"] == ["head.weight", "head.bias"]
    assert {"encoder.head.weight", "encoder.head.bias"} <= set(report["dropped"])
    assert all(k.startswith("decoder.") or k.startswith("encoder.head.") for k in report["dropped"])
    with torch.no_grad():
        x = clip(model)
        torch.testing.assert_close(model.forward_features(x), ssat.encoder.forward_features(x))


def to_mae(model: torch.nn.Module, fine_tuned: bool = False) -> dict[str, torch.Tensor]:
    """Our ImageViT weights in facebookresearch/mae's layout (pre-training: + decoder_*, mask_token)."""
    out = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    if fine_tuned:  # global_pool fine-tuning: fc_norm replaces norm, 1000-class head
        del out["norm.weight"], out["norm.bias"]
        out.update({"fc_norm.weight": torch.randn(D), "fc_norm.bias": torch.randn(D),
                    "head.weight": torch.randn(1000, D), "head.bias": torch.randn(1000)})
        return out
    out.update({
        "mask_token": torch.randn(1, 1, 32),
        "decoder_embed.weight": torch.randn(32, D),
        "decoder_pos_embed": torch.randn(1, out["pos_embed"].shape[1], 32),
        "decoder_blocks.0.norm1.weight": torch.randn(32),
        "decoder_norm.weight": torch.randn(32),
        "decoder_pred.weight": torch.randn(8 * 8 * 3, 32),
    })
    return out


def test_mae_pretrain_same_grid_reproduces_features():
    ref = randomized("vit_test", seed=1)
    model = randomized("vit_test", seed=2)
    report = load_pretrained(model, to_mae(ref))
    assert report["format"] == "mae"
    assert report["missing"] == ["head.weight", "head.bias"]
    assert set(report["dropped"]) == {"mask_token", "decoder_embed.weight", "decoder_pos_embed",
                                      "decoder_blocks.0.norm1.weight", "decoder_norm.weight", "decoder_pred.weight"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), ref.forward_features(x))


def test_mae_pos_embed_of_other_grid_is_resampled():
    ref = randomized("vit_test", seed=1, img_size=16)  # 2x2 patch grid, pos_embed [1, 1 + 4, D]
    model = create_model("vit_test")  # 32 px: 4x4 grid, pos_embed [1, 1 + 16, D]
    ckpt = to_mae(ref)
    load_pretrained(model, ckpt)
    assert model.pos_embed.shape == (1, 17, D)
    assert torch.equal(model.pos_embed[:, :1], ckpt["pos_embed"][:, :1])  # class-token position kept
    corners = model.pos_embed[0, 1:].reshape(4, 4, D)[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert not torch.allclose(corners, torch.zeros_like(corners))
    assert torch.equal(model.cls_token, ckpt["cls_token"])
    assert torch.equal(model.patch_embed.proj.weight, ckpt["patch_embed.proj.weight"])
    assert torch.equal(model.blocks[1].mlp.fc2.weight, ckpt["blocks.1.mlp.fc2.weight"])


def test_mae_finetuned_head_dropped_and_embed_mismatch_raises():
    model = create_model("vit_test", num_classes=2)  # token pooling: fc_norm is Identity
    ckpt = to_mae(randomized("vit_test", seed=1), fine_tuned=True)
    report = load_pretrained(model, {"model": ckpt})
    assert report["format"] == "timm"
    assert sorted(report["missing"]) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert sorted(report["unexpected"]) == ["fc_norm.bias", "fc_norm.weight"]
    assert sorted(report["dropped"]) == ["head.bias", "head.weight"]  # fc_norm is kept, reported unexpected
    narrow = to_mae(create_model("vit_test", embed_dim=32))
    one_line = r"^cls_token: checkpoint shape \(1, 1, 32\) does not fit model shape \(1, 1, 64\)$"
    with pytest.raises(ValueError, match=one_line):
        vit.checkpoint_filter_fn(narrow, model)


def test_1d_pos_embed_is_videomae_table():
    """pos_embed='1d' reproduces VideoMAE's get_sinusoid_encoding_table (sin on even, cos on odd channels)."""
    import numpy as np

    from deepfake_ssat.models.pos_embed import videomae_table

    n, d = 37, 64
    angles = np.array([[pos / np.power(10000, 2 * (j // 2) / d) for j in range(d)] for pos in range(n)])
    expected = angles.copy()
    expected[:, 0::2], expected[:, 1::2] = np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])
    assert torch.allclose(videomae_table(d, n), torch.from_numpy(expected).float(), atol=1e-6)
    model = create_model("videomae_test", pos_embed="1d")
    assert torch.allclose(model.pos_embed[0], videomae_table(64, model.patch_embed.num_patches))
