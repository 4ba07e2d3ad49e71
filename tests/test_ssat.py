import pytest
import torch
import torch.nn.functional as F
from conftest import astronaut_clip

from deepfake_ssat.config import ConfigError
from deepfake_ssat.engine import build_model
from deepfake_ssat.engine.trainer import build_optimizer
from deepfake_ssat.models import SSAT, MAEDecoder, SSATOutput, create_model, patchify, ssat_loss, videomae_target


def _video_cfg(tiny_cfg, *opts):
    return tiny_cfg("model.name=videomae_test", "model.in_chans=3", *opts)


def _batch(model, n=2):
    enc = model.encoder
    if enc.num_frames is not None:
        x = torch.randn(n, enc.in_chans, enc.num_frames, enc.img_size, enc.img_size)
    else:
        x = torch.randn(n, enc.in_chans, enc.img_size, enc.img_size)
    return x, torch.arange(n) % 2


@pytest.mark.parametrize("video", [False, True])
@pytest.mark.parametrize("ratio", [0.75, 0.95])
def test_every_parameter_gets_a_gradient_in_ssat_mode(tiny_cfg, video, ratio):
    cfg = _video_cfg(tiny_cfg, f"ssat.mask_ratio={ratio}") if video else tiny_cfg(f"ssat.mask_ratio={ratio}", "model.patch_size=4")
    model = build_model(cfg, num_classes=2)
    x, y = _batch(model)
    out = model(x)
    assert out.logits.shape == (2, 2)
    assert out.pred.shape[:2] == out.mask.shape
    loss, parts = model.loss(out, x, y)
    assert set(parts) == {"cls", "rec"}
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []


def test_scratch_builds_and_runs_no_decoder(tiny_cfg, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("decoder ran in scratch mode")
    monkeypatch.setattr(MAEDecoder, "forward", boom)
    for opts in (["ssat.lam=1.0"], ["decoder=null", "ssat.lam=1.0"]):
        model = build_model(tiny_cfg(*opts), num_classes=10)
        assert model.decoder is None
        assert not any(n.startswith("decoder") for n in model.state_dict())
        x, y = _batch(model)
        out = model(x)
        assert out.pred is None and out.mask is None
        loss, parts = model.loss(out, x, y)
        assert set(parts) == {"cls"}
        torch.testing.assert_close(loss, F.cross_entropy(out.logits, y, label_smoothing=0.1))


def test_null_decoder_with_ssat_lambda_is_a_config_error(tiny_cfg):
    with pytest.raises(ConfigError, match="ssat.lam"):
        build_model(tiny_cfg("decoder=null"), num_classes=10)


def test_lambda_zero_is_pure_mae(tiny_cfg):
    model = build_model(tiny_cfg("ssat.lam=0.0"), num_classes=10)
    x, y = _batch(model)
    out = model(x)
    assert out.logits is None
    loss, parts = model.loss(out, x, y)
    torch.testing.assert_close(loss, parts["rec"])
    loss.backward()
    assert model.encoder.head.weight.grad is None
    assert model.encoder.blocks[0].attn.qkv.weight.grad is not None


def test_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    target = torch.tensor([[[1.0, 3.0], [2.0, 2.0]], [[0.0, 4.0], [5.0, 1.0]]])  # [B=2, L=2, P=2]
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[1.0, -1.0], [0.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    lam, eps = 0.1, 0.1
    # CE with label smoothing by hand: (1 - eps) * nll + eps * mean(-log p)
    ce = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        logz = torch.logsumexp(torch.tensor(row), 0).item()
        logp = [v - logz for v in row]
        ce += (1 - eps) * -logp[y] + eps * -sum(logp) / 2
    ce /= 2
    # normalised targets by hand: per patch mean and unbiased variance over its 2 values
    sq, count = 0.0, 0
    for b in range(2):
        for i in range(2):
            if mask[b, i] == 0:
                continue
            a, c = target[b, i].tolist()
            mean, var = (a + c) / 2, ((a - (a + c) / 2) ** 2 + (c - (a + c) / 2) ** 2) / 1
            norm = [(a - mean) / (var + 1e-6) ** 0.5, (c - mean) / (var + 1e-6) ** 0.5]
            sq += sum((p - t) ** 2 for p, t in zip(pred[b, i].tolist(), norm)) / 2
            count += 1
    expected = lam * ce + (1 - lam) * sq / count
    out = SSATOutput(logits, pred, mask)
    loss, parts = ssat_loss(out, target, labels, lam, norm_pix_loss=True, label_smoothing=eps)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert parts["cls"].item() == pytest.approx(ce, rel=1e-5)
    # without normalisation the masked MSE is on raw pixels: patches (0,0), (1,0), (1,1)
    raw = ((0 - 1) ** 2 + (0 - 3) ** 2) / 2 + ((1 - 0) ** 2 + (-1 - 4) ** 2) / 2 + ((0 - 5) ** 2 + (0 - 1) ** 2) / 2
    _, parts = ssat_loss(out, target, labels, lam, norm_pix_loss=False, label_smoothing=eps)
    assert parts["rec"].item() == pytest.approx(raw / 3, rel=1e-6)


def test_videomae_target_matches_hand_computation():
    """One tubelet (2 frames x 2 x 2 px): un-normalised with ImageNet's mean / std, then each channel standardised
    over its 8 pixels with the unbiased std and 1e-6 added to the std; values ordered (t, row, column, channel)."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 2, 2, 2)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = []
    for c in range(3):
        v = [x[0, c].flatten()[i].item() * std[c] + mean[c] for i in range(8)]
        mu = sum(v) / 8
        sd = (sum((a - mu) ** 2 for a in v) / 7) ** 0.5
        expected.append([(a - mu) / (sd + 1e-6) for a in v])
    by_pixel = [expected[c][i] for i in range(8) for c in range(3)]  # channel innermost
    torch.testing.assert_close(videomae_target(x, 2, 2)[0, 0], torch.tensor(by_pixel), atol=1e-5, rtol=1e-5)
    raw = [x[0, c].flatten()[i].item() * std[c] + mean[c] for i in range(8) for c in range(3)]
    torch.testing.assert_close(videomae_target(x, 2, 2, norm_pix_loss=False)[0, 0], torch.tensor(raw))


def test_the_two_video_targets_differ_materially_on_a_real_clip():
    """The figures of docs/training.md: ViT-B geometry (16 x 224 px, tubelet 2 x 16 x 16) on a real clip. With
    norm_pix_loss the joint and VideoMAE targets (each ~unit variance per tubelet) differ by a mean squared gap of
    ~0.42 (cosine ~0.79): VideoMAE's drops each tubelet's colour (its per-channel means, ~29 % of the variance)."""
    x = astronaut_clip(16, 224)
    raw = patchify(x, 16, 2)  # [1, 1568, 1536]
    var, mean = torch.var_mean(raw, dim=-1, keepdim=True)
    joint = (raw - mean) / torch.sqrt(var + 1e-6)
    videomae = videomae_target(x, 16, 2)
    assert 0.35 < (joint - videomae).pow(2).mean().item() < 0.5
    assert 0.75 < F.cosine_similarity(joint, videomae, dim=-1).mean().item() < 0.83
    per_channel = raw.reshape(1, 1568, 512, 3)
    colour = (per_channel.mean(2) - per_channel.mean((2, 3))[..., None]).pow(2).mean(-1)  # [1, L]
    assert 0.25 < (colour / (per_channel - per_channel.mean((2, 3), keepdim=True)).pow(2).mean((2, 3))).mean() < 0.33
    # without norm_pix_loss VideoMAE regresses [0, 1] pixels, ours the normalised clip: ~19x the loss scale
    assert 15 < (raw.std() / videomae_target(x, 16, 2, norm_pix_loss=False).std()).item() ** 2 < 23


def test_video_target_is_built_from_the_config_and_checked(tiny_cfg):
    model = build_model(_video_cfg(tiny_cfg, "ssat.video_target=videomae"), num_classes=2)
    assert model.video_target == "videomae"
    x, y = _batch(model)
    out = model(x)
    loss, parts = model.loss(out, x, y)
    target = videomae_target(x, 8, 2)
    expected = ssat_loss(out, target, y, model.lam, norm_pix_loss=False, label_smoothing=model.label_smoothing)[0]
    torch.testing.assert_close(loss, expected)
    assert build_model(_video_cfg(tiny_cfg), num_classes=2).video_target == "joint"  # the default
    for opts in (["ssat.video_target=videomae"], ["model.name=videomae_test", "ssat.video_target=videomae"]):
        with pytest.raises(ConfigError, match=r"^ssat.video_target: videomae is VideoMAE's target for RGB clips") as e:
            build_model(tiny_cfg(*opts), num_classes=2)  # an image model; a 1-channel video model
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="video_target must be one of joint, videomae"):
        SSAT(create_model("videomae_test"), video_target="tubelet", lam=1.0)


def test_no_weight_decay_on_norms_biases_and_position_embeddings(tiny_cfg):
    model = build_model(tiny_cfg(), num_classes=10)
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    decay = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert {"encoder.pos_embed", "encoder.cls_token", "decoder.mask_token"} <= no_decay
    assert "encoder.blocks.0.norm1.weight" in no_decay and "encoder.head.bias" in no_decay
    assert "encoder.blocks.0.attn.qkv.weight" in decay and "decoder.pred.weight" in decay
    assert not any(n.endswith(".bias") or "norm" in n for n in decay)
    assert decay | no_decay == set(names.values())
