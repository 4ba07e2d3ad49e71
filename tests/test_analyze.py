"""tools/analyze.py and deepfake_ssat.analysis: each analysis on tiny models, properties that could fail."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from conftest import ROOT, TINY_DIGITS, run_env
from deepfake_ssat.analysis import (HessianOperator, attention_distribution, attention_map, capture,
                                    explicit_attention, feature_variance, grad_cam, hessian_spectrum,
                                    inter_token_distance, reconstruct, require_plain_vit, resolve_blocks,
                                    slq_density,
                                    top_eigenvalues, unpatchify, upsample_map)
from deepfake_ssat.analysis import plots
from deepfake_ssat.analysis.hessian import model_losses, unfused_attention
from deepfake_ssat.commands.analyze import main as analyze_main
from deepfake_ssat.config import load_config
from deepfake_ssat.engine import build_model, fit, load_checkpoint, save_checkpoint, strip_decoder
from deepfake_ssat.models import create_model, patchify

ANALYSES = ("attention", "distance", "variance", "hessian", "gradcam", "recon", "attnmap")


def _models():
    torch.manual_seed(0)
    return {
        "image": (create_model("vit_test", in_chans=1, num_classes=3).eval(), torch.randn(2, 1, 32, 32)),
        "video": (create_model("videomae_test", num_classes=2).eval(), torch.randn(2, 3, 8, 32, 32)),
    }


def _no_hooks_left(encoder: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in encoder.modules())


# ---------------------------------------------------------------------------------------------
# Probes


@pytest.mark.parametrize("kind", ["image", "video"])
def test_attention_columns_sum_to_token_count_and_hooks_leave_model_untouched(kind):
    enc, x = _models()[kind]
    reference = enc(x)
    cap = capture(enc, x, [0, 1])
    n = enc.num_prefix_tokens + len(patchify(x, 8, enc.tubelet_size)[0])
    assert torch.equal(cap.logits, reference), "probing changed the model's output"
    assert _no_hooks_left(enc) and all(b.attn.fused_attn for b in enc.blocks), "analysis touched the model"
    assert len(cap.tokens) == 2 and cap.tokens[0].shape == (2, n, 64)
    for attn in cap.attention.values():
        assert attn.shape == (2, 4, n, n)
        dist = attention_distribution(attn)
        assert dist.shape == (n,)
        assert dist.sum().item() == pytest.approx(n, rel=1e-5)
        assert torch.all(dist[:-1] >= dist[1:]) and torch.all(dist >= 0)


def test_explicit_attention_reproduces_the_fused_module():
    enc, _ = _models()["image"]
    attn = enc.blocks[0].attn
    x = torch.randn(3, 17, 64)  # [B, N, C]
    probs = explicit_attention(attn, x)  # [B, H, N, N]
    v = attn.qkv(x).reshape(3, 17, 3, 4, 16)[:, :, 2].transpose(1, 2)  # [B, H, N, head_dim]
    out = attn.proj((probs @ v).transpose(1, 2).reshape(3, 17, 64))
    torch.testing.assert_close(out, attn(x), atol=1e-5, rtol=1e-5)


def test_block_selection():
    assert resolve_blocks(None, 12) == [0, 5, 11]  # the paper's Fig. 6: first, sixth, twelfth
    assert resolve_blocks(None, 24) == [0, 5, 23]
    assert resolve_blocks(None, 6) == [0, 5]
    assert resolve_blocks(None, 4) == [0, 2, 3] and resolve_blocks(None, 2) == [0, 1]
    assert resolve_blocks([0, -1, 11], 12) == [0, 11]
    with pytest.raises(ValueError, match="out of range"):
        resolve_blocks([12], 12)


def test_distance_and_variance():
    same = torch.ones(2, 5, 8)  # identical tokens
    assert torch.equal(inter_token_distance(same), torch.zeros(2))
    assert torch.equal(feature_variance(same), torch.zeros(2))
    pair = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])  # two tokens 5 apart
    assert inter_token_distance(pair).item() == pytest.approx(5.0)
    assert feature_variance(pair).item() == pytest.approx((2.25 + 4.0) / 2)  # per-channel var over tokens
    rand = torch.randn(3, 7, 4)
    assert torch.all(inter_token_distance(rand) > 0) and torch.all(feature_variance(rand) > 0)


# ---------------------------------------------------------------------------------------------
# Hessian


def _quadratic(eigs: torch.Tensor, rotate: bool):
    """Parameter w and loss 0.5 w^T A w with A's spectrum ``eigs``."""
    torch.manual_seed(0)
    q = torch.linalg.qr(torch.randn(len(eigs), len(eigs)))[0] if rotate else torch.eye(len(eigs))
    a = q @ torch.diag(eigs) @ q.T
    w = nn.Parameter(torch.randn(len(eigs)))
    return a, HessianOperator([lambda: 0.5 * w @ a @ w], [w])


def test_hessian_top_eigenvalues_of_known_quadratic():
    eigs = torch.tensor([10.0, -6.0, 3.0, 1.0, 0.5, 0.2, -0.1, 0.05])
    a, op = _quadratic(eigs, rotate=True)
    v = torch.randn(len(eigs))
    torch.testing.assert_close(op(v), a @ v, rtol=1e-5, atol=1e-5)
    values, vectors = top_eigenvalues(op, op.num_params, k=3, max_iters=500, tol=1e-9,
                                      generator=torch.Generator().manual_seed(0))
    assert values == pytest.approx([10.0, -6.0, 3.0], rel=1e-4)
    for lam, vec in zip(values, vectors):
        torch.testing.assert_close(a @ vec, lam * vec, atol=1e-3, rtol=1e-3)


def test_slq_recovers_negative_mass_and_extremes():
    eigs = torch.cat([torch.linspace(1.0, 2.0, 24), torch.linspace(-3.0, -1.0, 16)])  # 40% negative
    _, op = _quadratic(eigs, rotate=False)  # diagonal: Rademacher probes make SLQ exact
    out = slq_density(op, op.num_params, steps=40, probes=2, generator=torch.Generator().manual_seed(0))
    assert out["negative_mass"] == pytest.approx(0.4, abs=1e-3)
    assert out["negative_count_estimate"] == pytest.approx(16, abs=0.05)
    assert out["min_eigenvalue"] == pytest.approx(-3.0, abs=1e-3)
    assert out["max_eigenvalue"] == pytest.approx(2.0, abs=1e-3)
    assert all(sum(w) == pytest.approx(1.0, abs=1e-6) for w in out["weights"])
    integral = torch.trapezoid(torch.tensor(out["density"]), torch.tensor(out["grid"])).item()
    assert integral == pytest.approx(1.0, abs=0.02)


def test_hessian_spectrum_on_tiny_model_is_symmetric_and_leaves_training_path(tiny_cfg):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(), 10)
    batch = (torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,)))
    params = list(model.encoder.parameters())
    op = HessianOperator(model_losses(model, [batch], "joint"), params)
    u, v = torch.randn(op.num_params), torch.randn(op.num_params)
    with unfused_attention(model):
        assert torch.dot(u, op(v)).item() == pytest.approx(torch.dot(v, op(u)).item(), rel=1e-3)
    out = hessian_spectrum(model, [batch], "cls", topk=1, power_iters=10, steps=3, probes=1)
    assert out["num_params"] == sum(p.numel() for p in params)
    assert len(out["top_eigenvalues"]) == 1 and out["seconds"] > 0 and out["hvp_calls"]["slq"] == 3
    # Ritz values lie inside the spectrum, whose radius power iteration found
    assert max(abs(out["min_eigenvalue"]), out["max_eigenvalue"]) <= abs(out["top_eigenvalues"][0]) * 1.01
    assert all(m.attn.fused_attn for m in model.encoder.blocks), "fused attention not restored"


# ---------------------------------------------------------------------------------------------
# Grad-CAM and attention maps


class PlantedEncoder(nn.Module):
    """Toy token model whose class-1 logit depends only on the token at ``region``.

    Tokens = (patch brightness + offset, 1) with offset -10 everywhere but ``region``; the single
    "block" is a ReLU and the logit sums channel 0: a bright patch elsewhere contributes nothing.
    """
    num_prefix_tokens = 0
    patch_size = 8

    def __init__(self, grid: tuple[int, ...], region: tuple[int, ...], tubelet: int = 1):
        super().__init__()
        self.grid_size, self.tubelet_size, self.img_size = grid, tubelet, grid[-1] * 8
        offset = torch.full(grid, -10.0)
        offset[region] = 0.0
        self.register_buffer("offset", offset.flatten())  # [L]
        self.gain = nn.Parameter(torch.ones(()))
        self.blocks = nn.Sequential(nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = patchify(x, 8, self.tubelet_size if x.ndim == 5 else None).mean(-1)  # [B, L]
        tokens = torch.stack([bright + self.offset, torch.ones_like(bright)], dim=-1) * self.gain  # [B, L, 2]
        evidence = self.blocks(tokens)[..., 0].sum(1)  # [B]
        return torch.stack([-evidence, evidence], dim=1)


@pytest.mark.parametrize("kind", ["image", "video"])
def test_gradcam_highlights_the_region_a_planted_model_depends_on(kind):
    if kind == "image":  # region top-right, an equally bright distractor bottom-left
        enc, region, distractor = PlantedEncoder((4, 4), (0, 3)), (0, 3), (3, 0)
        x = torch.zeros(1, 1, 32, 32)
        x[..., 0:8, 24:32] = 5.0
        x[..., 24:32, 0:8] = 5.0
        box = (0, slice(0, 8), slice(24, 32))
        other = (0, slice(24, 32), slice(0, 8))
    else:  # same spatial place, region in the second tubelet (frames 2-3), distractor in the first
        enc, region, distractor = PlantedEncoder((2, 4, 4), (1, 2, 0), tubelet=2), (1, 2, 0), (0, 2, 0)
        x = torch.zeros(1, 1, 4, 32, 32)
        x[..., 0:4, 16:24, 0:8] = 5.0
        box = (0, slice(2, 4), slice(16, 24), slice(0, 8))
        other = (0, slice(0, 2), slice(16, 24), slice(0, 8))
    cam, target = grad_cam(enc, x)
    assert target.tolist() == [1]
    assert cam.shape == (1, *enc.grid_size) and torch.all(cam >= 0)
    flat = cam[0].flatten().argmax().item()
    assert tuple(torch.unravel_index(torch.tensor(flat), enc.grid_size)) == region
    assert cam[(0, *distractor)].item() == 0.0
    up = upsample_map(cam, enc)
    assert up.shape == (1, *x.shape[2:]) and up.min() >= 0 and up.max() == pytest.approx(1.0)
    assert up[box].mean() > 0.5 > 3 * up[other].mean()
    assert _no_hooks_left(enc)
    with pytest.raises(ValueError, match="not a plain ViT"):  # no timm attention: the probes refuse it
        require_plain_vit(enc)


@pytest.mark.parametrize("kind", ["image", "video"])
def test_gradcam_and_attention_map_on_real_models(kind, tmp_path):
    enc, x = _models()[kind]
    require_plain_vit(enc)
    cam, target = grad_cam(enc, x)
    assert cam.shape == (2, *enc.grid_size) and torch.all(cam >= 0) and target.shape == (2,)
    assert _no_hooks_left(enc)
    last = len(enc.blocks) - 1
    amap, how = attention_map(enc, capture(enc, x, [last]).attention[last])
    assert amap.shape == (2, *enc.grid_size) and torch.all(amap >= 0)
    if kind == "image":  # the class token's attention: what it does not give itself
        assert how == "cls" and torch.all(amap.flatten(1).sum(1) < 1)
    else:  # mean-token: attention received, averaged over queries, sums to 1
        assert how == "mean-token"
        torch.testing.assert_close(amap.flatten(1).sum(1), torch.ones(2))
    plots.plot_maps(x, {"a": upsample_map(cam, enc), "b": upsample_map(amap, enc)}, "t", tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------
# Reconstructions


@pytest.mark.parametrize("shape,grid,tubelet", [((2, 3, 32, 32), (4, 4), 1), ((2, 3, 8, 32, 32), (4, 4, 4), 2)])
def test_unpatchify_inverts_patchify(shape, grid, tubelet):
    x = torch.randn(shape)
    assert torch.equal(unpatchify(patchify(x, 8, tubelet if len(shape) == 5 else None), 8, grid, 3, tubelet), x)


@pytest.mark.parametrize("model_name", ["vit_test", "videomae_test"])
def test_reconstruction_of_a_perfect_decoder_is_the_input(tiny_cfg, model_name, tmp_path):
    """A decoder that predicts the standardised target exactly: zero loss, and re-adding the patch
    statistics (display only) gives back the input; the honest prediction stays standardised."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg(f"model.name={model_name}"), 10).eval()
    x = torch.randn(2, 1, 8, 32, 32) if model_name == "videomae_test" else torch.randn(2, 1, 32, 32)
    target = model.patchify(x)
    var, mean = torch.var_mean(target, dim=-1, keepdim=True)
    model.decoder.forward = lambda latent, ids_restore: (target - mean) / torch.sqrt(var + 1e-6)
    rec = reconstruct(model, x, seed=3)
    assert rec.standardised and rec.loss == pytest.approx(0.0, abs=1e-8)
    torch.testing.assert_close(rec.with_true_stats, x, atol=1e-4, rtol=1e-4)
    assert rec.removed.shape == x.shape and rec.removed.float().mean().item() == pytest.approx(0.75)
    assert torch.equal(reconstruct(model, x, seed=3).removed, rec.removed), "mask not fixed by the seed"
    plots.plot_recon(x, {"m": rec}, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_reconstruction_with_the_videomae_target_re_adds_per_channel_stats(tiny_cfg):
    """``ssat.video_target: videomae``: a decoder predicting VideoMAE's target exactly has zero loss, and re-adding
    each tubelet channel's true statistics gives back the (ImageNet-normalised) input."""
    from deepfake_ssat.models import videomae_target

    torch.manual_seed(0)
    cfg = tiny_cfg("model.name=videomae_test", "model.in_chans=3", "ssat.video_target=videomae")
    model = build_model(cfg, 10).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    target = videomae_target(x, 8, 2)
    model.decoder.forward = lambda latent, ids_restore: target
    rec = reconstruct(model, x, seed=3)
    assert rec.standardised and rec.loss == pytest.approx(0.0, abs=1e-8)
    torch.testing.assert_close(rec.with_true_stats, x, atol=1e-4, rtol=1e-4)


def test_reconstruct_needs_a_decoder(tiny_cfg):
    with pytest.raises(ValueError, match="no MAE decoder"):
        reconstruct(build_model(tiny_cfg("decoder=null", "ssat.lam=1.0"), 10), torch.randn(1, 1, 32, 32))


# ---------------------------------------------------------------------------------------------
# CLI


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """A digits SSAT checkpoint trained by fit() (1 step) and a decoder-stripped copy of it."""
    root = tmp_path_factory.mktemp("runs")
    (root / "tiny.yaml").write_text(TINY_DIGITS)
    fit(load_config(root / "tiny.yaml", ["train.epochs=1"]), root / "ssat", max_steps=1)
    ckpt = load_checkpoint(root / "ssat" / "last.pt")
    (root / "stripped").mkdir()
    stripped = {"model": strip_decoder(ckpt["model"]), "config": ckpt["config"]}
    save_checkpoint(root / "stripped" / "last.pt", stripped)
    return root


def test_cli_runs_every_analysis_on_a_digits_checkpoint(digits_runs, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "analyze.py"), "--checkpoint", str(digits_runs / "ssat" / "last.pt"),
         "--num-samples", "4", "--batch-size", "2", "--topk", "1", "--power-iters", "3", "--lanczos-steps", "3",
         "--probes", "1", "--out", str(out)],
        capture_output=True, text=True, env=run_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    for what in ANALYSES:
        assert (out / f"{what}.png").stat().st_size > 1000, what
        assert json.loads((out / f"{what}.json").read_text())["samples"]["indices"]
    att = json.loads((out / "attention.json").read_text())["checkpoints"]["ssat"]["blocks"]
    assert list(att) == ["0", "1"] and sum(att["1"]) == pytest.approx(17, rel=1e-4)  # 16 patches + class token
    hess = json.loads((out / "hessian.json").read_text())["checkpoints"]["ssat"]
    assert hess["num_batches"] == 2 and hess["seconds"] > 0 and len(hess["top_eigenvalues"]) == 1
    recon = json.loads((out / "recon.json").read_text())["checkpoints"]["ssat"]
    assert recon["prediction_space"] == "per-patch standardised"


def test_cli_several_checkpoints_and_a_decoderless_one(digits_runs, tmp_path, capsys):
    ckpts = [str(digits_runs / name / "last.pt") for name in ("ssat", "stripped")]
    rc = analyze_main(["--checkpoint", *ckpts, "--what", "recon,distance", "--num-samples", "3",
                       "--data", str(digits_runs / "tiny.yaml"), "--out", str(tmp_path)])
    assert rc == 0
    assert "recon: skipped stripped: the checkpoint has no MAE decoder" in capsys.readouterr().err
    recon = json.loads((tmp_path / "recon.json").read_text())
    assert list(recon["checkpoints"]) == ["ssat"] and "stripped" in recon["skipped"]
    dist = json.loads((tmp_path / "distance.json").read_text())["checkpoints"]
    assert list(dist) == ["ssat", "stripped"] and dist["ssat"] == dist["stripped"]  # same encoder, same samples
    assert not (tmp_path / "attention.json").exists()


def test_checkpoint_labels_are_unique():
    from deepfake_ssat.analysis.runner import checkpoint_names
    assert checkpoint_names([Path("runs/ssat/last.pt"), Path("runs/scratch/last.pt")]) == ["ssat", "scratch"]
    assert checkpoint_names([Path("r/ssat/best.pt"), Path("r/ssat/last.pt")]) == ["ssat/best", "ssat/last"]
    with pytest.raises(ValueError, match="given twice"):
        checkpoint_names([Path("r/ssat/last.pt")] * 2)


@pytest.mark.parametrize("argv,message", [
    (["--checkpoint", "missing/last.pt"], "checkpoint not found"),
    (["--checkpoint", "{ssat}", "--what", "attention,saliency"], "unknown analysis 'saliency'"),
    (["--checkpoint", "{ssat}", "--blocks", "7"], "block 7 out of range"),
    (["--checkpoint", "{ssat}", "--split", "holdout"], "--split holdout"),
    (["--checkpoint", "{ssat}", "--num-samples", "0"], "--num-samples: must be >= 1"),
])
def test_cli_errors_are_one_line(digits_runs, tmp_path, capsys, argv, message):
    argv = [a.format(ssat=digits_runs / "ssat" / "last.pt") for a in argv] + ["--out", str(tmp_path)]
    assert analyze_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


@pytest.mark.parametrize("aux", ["simclr", "dino"])
def test_multiview_checkpoints_load_for_analysis(tiny_cfg, tmp_path, aux):
    """SimCLR / DINO runs are analysed through their encoder; the auxiliary heads are left out."""
    from deepfake_ssat.analysis.runner import load_for_analysis
    from deepfake_ssat.engine import fit, load_checkpoint

    fit(tiny_cfg("data.images.subset_size=64", "data.loader.batch_size=8", "train.epochs=1", f"ssat.aux={aux}"),
        tmp_path,
        max_steps=1)
    model, cfg = load_for_analysis(tmp_path / "last.pt", torch.device("cpu"))
    state = load_checkpoint(tmp_path / "last.pt")["model"]
    assert model.decoder is None and cfg.ssat.aux == "mae"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k])
    x = torch.randn(2, 1, 32, 32)
    probed = capture(model.encoder, x, [0])
    assert probed.attention[0].shape[-1] == model.encoder.patch_embed.num_patches + 1  # + class token
    torch.testing.assert_close(probed.logits, model.predict(x))
