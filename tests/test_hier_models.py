"""Hierarchical encoders (Swin + SimMIM, CvT + ConvMAE-style decoder) and the ResNet-50 baseline
trained through the same SSAT wrapper as the ViTs."""
import pytest
import torch

from deepfake_ssat.config import ConfigError
from deepfake_ssat.engine import build_model
from deepfake_ssat.engine.build import build_encoder
from deepfake_ssat.engine.trainer import build_optimizer
from deepfake_ssat.models import SSAT, MAEDecoder, SimMIMDecoder, create_model, patchify
from deepfake_ssat.models.hier import upsample_mask

ENCODERS = ["swin_test", "cvt_test", "resnet50", "vit_test"]
DECODERS = {"swin_test": SimMIMDecoder, "cvt_test": MAEDecoder, "vit_test": MAEDecoder}


def _cfg(tiny_cfg, name, lam):
    return tiny_cfg(f"model.name={name}", "model.in_chans=3", "model.img_size=32", f"ssat.lam={lam}")


def _batch(model, n=2):
    enc = model.encoder
    return torch.randn(n, enc.in_chans, enc.img_size, enc.img_size), torch.arange(n) % 2


@pytest.mark.parametrize("name", ENCODERS)
@pytest.mark.parametrize("lam", [1.0, 0.1, 0.0])
def test_train_step_gradients_and_decoder_free_inference(tiny_cfg, monkeypatch, name, lam):
    if name == "resnet50" and lam < 1.0:
        with pytest.raises(ConfigError, match="ssat.lam: .* classification-only"):
            build_model(_cfg(tiny_cfg, name, lam), num_classes=2)
        return
    cfg = _cfg(tiny_cfg, name, lam)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=2).train()
    assert (model.decoder is None) == (lam == 1.0)
    if model.decoder is not None:
        assert type(model.decoder) is DECODERS[name]
    params = dict(model.named_parameters())
    if "encoder.mask_token" in params:
        assert "encoder.mask_token" in model.no_weight_decay()
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05)

    x, y = _batch(model)
    out = model(x)
    assert (out.logits is None) == (lam == 0.0)
    if lam < 1.0:
        assert out.pred.shape == model.patchify(x).shape and out.mask.shape == out.pred.shape[:2]
    loss, parts = model.loss(out, x, y)
    assert set(parts) == {"cls", "rec"} - ({"rec"} if lam == 1.0 else set()) - ({"cls"} if lam == 0.0 else set())
    loss.backward()

    # no gradient: the mask token without a masked pass (lam 1), the classifier without a class loss (lam 0)
    expected_none = {n for n in params if (lam == 1.0 and n == "encoder.mask_token")
                     or (lam == 0.0 and n.startswith("encoder.head."))}
    # CvT's class token alone feeds the head, so the patch queries of its very last block reach no loss
    expected_zero = {n for n in params if lam == 1.0 and n.startswith("encoder.stages.2.blocks.0.attn.conv_q.")}
    none = {n for n, p in params.items() if p.grad is None}
    zero = {n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() == 0}
    assert none == expected_none and zero == expected_zero
    opt.step()
    assert torch.isfinite(loss)

    # inference: encoder only; the decoder never runs and is not needed to load the weights
    if model.decoder is not None:
        monkeypatch.setattr(model.decoder, "forward", lambda *a: pytest.fail("decoder ran at inference"))
    model.eval()
    logits = model.predict(x)
    assert logits.shape == (2, 2)
    fresh = build_encoder(cfg.model, num_classes=2).eval()
    fresh.load_state_dict(model.encoder.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), logits)


def test_upsample_mask_repeats_blocks():
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0]])  # 2x2 grid
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float)
    torch.testing.assert_close(upsample_mask(mask, (2, 2), (4, 4))[0], expected)
    with pytest.raises(ValueError, match="does not divide"):
        upsample_mask(torch.ones(1, 9), (3, 3), (4, 4))


def test_simmim_mask_replaces_every_4px_patch_of_each_masked_16px_patch():
    enc = create_model("swin_test", mask_patch_size=16).eval()
    assert enc.masking == "replace" and enc.mask_grid_size == (2, 2) and enc.embed_grid == (8, 8)
    seen = {}
    enc.layers.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    x = torch.randn(2, 3, 32, 32)
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])  # [B, 2*2]
    with torch.no_grad():
        tokens = enc.embed(x)  # [B, 8, 8, D]
        out = enc.forward_masked(tokens, mask)
    assert out.shape == (2, 16, enc.num_features)  # every output token
    for b in range(2):
        for i in range(8):
            for j in range(8):
                hidden = mask[b, (i // 4) * 2 + j // 4] == 1
                want = enc.mask_token if hidden else tokens[b, i, j]
                torch.testing.assert_close(seen["x"][b, i, j], want)


def test_ssat_mask_and_target_are_cut_in_mask_patches():
    enc = create_model("swin_test", mask_patch_size=16)
    dec = SimMIMDecoder(enc.num_features, enc.grid_size, enc.patch_size, enc.mask_patch_size, enc.in_chans)
    model = SSAT(enc, dec, mask_ratio=0.5, lam=0.1)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.mask.shape == (2, 4) and out.mask.sum(1).tolist() == [2.0, 2.0]
    assert out.pred.shape == (2, 4, 16 * 16 * 3)
    torch.testing.assert_close(model.patchify(x), patchify(x, 16))


def test_simmim_decoder_output_token_only_affects_its_own_region():
    """Output token (i, j) (stride 8) lands in mask patch (i // 2, j // 2) (16 px) and nowhere else."""
    dec = SimMIMDecoder(in_dim=8, grid_size=(4, 4), stride=8, mask_patch_size=16, out_chans=3)
    tokens = torch.randn(1, 16, 8)
    bumped = tokens.clone()
    bumped[0, 1 * 4 + 2] += 1.0  # token (1, 2) -> mask patch (0, 1)
    with torch.no_grad():
        changed = (dec(bumped) - dec(tokens)).abs().sum(-1)[0] > 0  # [4]
    assert changed.tolist() == [False, True, False, False]


@pytest.mark.parametrize("name", ["swin_test", "cvt_test"])
def test_visible_pass_keeping_everything_equals_full_pass(name):
    enc = create_model(name).eval()
    x = torch.randn(2, 3, 32, 32)
    n = enc.grid_size[0] * enc.grid_size[1]
    with torch.no_grad():
        torch.testing.assert_close(enc.forward_features(x, torch.arange(n).expand(2, n)), enc.forward_features(x))


def test_cvt_masked_pass_replaces_stage1_tokens_and_leaves_bn_statistics():
    enc = create_model("cvt_test").train()  # stage grids 8, 4, 2: one output patch = 4x4 stage-1 tokens
    seen = {}
    stage1 = enc.stages[0].forward_tokens
    enc.stages[0].forward_tokens = lambda x, grid: seen.update(x=x) or stage1(x, grid)
    x = torch.randn(2, 3, 32, 32)
    keep = torch.tensor([[3], [0]])  # output patch kept per sample
    bn = enc.stages[1].blocks[0].attn.conv_k[1]
    before = bn.running_mean.clone()
    with torch.no_grad():
        tokens = enc.embed(x)  # [B, 64, D1]
        visible = enc.forward_tokens(tokens, keep)
    assert visible.shape == (2, 2, enc.num_features)  # class token + one kept patch
    torch.testing.assert_close(bn.running_mean, before)
    for b, kept in enumerate(keep[:, 0].tolist()):
        for i in range(8):
            for j in range(8):
                hidden = (i // 4) * 2 + j // 4 != kept
                want = enc.mask_token if hidden else tokens[b, i * 8 + j]
                torch.testing.assert_close(seen["x"][b, i * 8 + j], want)
    with torch.no_grad():
        enc.forward_tokens(tokens)
    assert not torch.equal(bn.running_mean, before)  # the full pass does update them


def test_cvt_decoder_is_mae_decoder_on_output_patches(tiny_cfg):
    model = build_model(_cfg(tiny_cfg, "cvt_test", 0.1), num_classes=2)
    assert model.decoder.num_prefix_tokens == 1 and model.decoder.pred.out_features == 16 * 16 * 3
    assert model.decoder.pos_embed.shape[1] == 4  # 2x2 output grid at 32 px


@pytest.mark.parametrize("name, expected, tol", [
    ("cvt_13", 19.98e6, 0.02),  # official CvT-13
    ("swin_tiny_patch4_window7_224", 28.29e6, 0.01),  # Swin-T
    ("resnet50", 25.56e6, 0.01),
])
def test_full_size_parameter_counts(name, expected, tol):
    with torch.device("meta"):
        model = create_model(name, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(expected, rel=tol)


def test_geometry_errors_are_one_line():
    with pytest.raises(ValueError, match="mask_patch_size"):
        create_model("swin_test", mask_patch_size=6)
    with pytest.raises(ValueError, match="multiple of the total stride 16"):
        create_model("cvt_test", img_size=40)
    with pytest.raises(ValueError, match="no masked pass"):
        SSAT(create_model("resnet50", img_size=32), MAEDecoder(2048, (1, 1), 3072), lam=0.1)


@pytest.mark.parametrize("name", ENCODERS)
def test_inference_checkpoint_of_every_encoder_loads(tiny_cfg, tmp_path, name):
    """load_inference_model finds the classifier of each encoder (head / head.fc / fc) and rebuilds it."""
    from deepfake_ssat.config import config_to_dict
    from deepfake_ssat.engine.checkpoint import save_checkpoint
    from deepfake_ssat.engine.weights import load_inference_model

    cfg = _cfg(tiny_cfg, name, 1.0)
    model = build_model(cfg, num_classes=7).eval()
    save_checkpoint(tmp_path / "m.pt", {"model": model.state_dict(), "config": config_to_dict(cfg)})
    encoder, _ = load_inference_model(tmp_path / "m.pt")
    x, _ = _batch(model)
    torch.testing.assert_close(encoder(x), model.predict(x))
    assert encoder(x).shape == (2, 7)
