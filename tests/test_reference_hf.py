"""Our reconstruction branches against HuggingFace transformers' MAE and VideoMAE, a test-only reference.

Both sides are built from small random configs (nothing is downloaded) of one geometry, read off our model; their
weights are copied ours <- theirs by a pure key mapping (:func:`hf_filter_fn`, timm's ``checkpoint_filter_fn``
style) and both get the same input and the same mask (``noise`` whose argsort is our shuffle for ViTMAE, our tube
mask as ``bool_masked_pos`` for VideoMAE). Every tensor on the way is compared in data-flow order
(:func:`assert_flow`), so a failure names the first one that differs. The package itself never imports
transformers.
"""
from __future__ import annotations

import contextlib
import re

import pytest
import torch
import torch.nn as nn
from conftest import astronaut_clip

pytest.importorskip("transformers", reason="transformers is the test-only MAE / VideoMAE reference ([dev] extra)")
from transformers import VideoMAEConfig, VideoMAEForPreTraining, ViTMAEConfig, ViTMAEForPreTraining  # noqa: E402
from transformers.models.videomae import modeling_videomae  # noqa: E402

from deepfake_ssat.engine import build_model  # noqa: E402
from deepfake_ssat.models import SSAT, random_masking, tube_masking, videomae_target  # noqa: E402
from deepfake_ssat.models.masking import gather_tokens  # noqa: E402
from deepfake_ssat.models.pos_embed import sincos_grid, videomae_table  # noqa: E402

ATOL = RTOL = 1e-5  # fp32 throughout

# ------------------------------------------------------------------------------------------ key mapping

# one HF transformer layer: its parameters by leaf (transformers 5 spelling, then 4's) -> timm Block's
_QKV = {"attention.q_proj": "q", "attention.attention.query": "q", "attention.k_proj": "k",
        "attention.attention.key": "k", "attention.v_proj": "v", "attention.attention.value": "v"}
_BLOCK = {"attention.o_proj": "attn.proj", "attention.output.dense": "attn.proj", "layernorm_before": "norm1",
          "layernorm_after": "norm2", "mlp.fc1": "mlp.fc1", "intermediate.dense": "mlp.fc1", "mlp.fc2": "mlp.fc2",
          "output.dense": "mlp.fc2"}
_LAYER = re.compile(r"^(?P<stack>vit\.layers|vit\.encoder\.layer|videomae\.encoder\.layer|decoder\.decoder_layers)"
                    r"\.(?P<i>\d+)\.(?P<leaf>.+)\.(?P<param>weight|bias)$")
# everything else, by module (or parameter) name
_RENAME = {
    "vit.embeddings.cls_token": "encoder.cls_token", "vit.embeddings.position_embeddings": "encoder.pos_embed",
    "vit.embeddings.patch_embeddings.projection": "encoder.patch_embed.proj",
    "videomae.embeddings.patch_embeddings.projection": "encoder.patch_embed.proj",
    "vit.layernorm": "encoder.norm", "videomae.layernorm": "encoder.norm",
    "decoder.mask_token": "decoder.mask_token", "mask_token": "decoder.mask_token",
    "decoder.decoder_embed": "decoder.embed", "encoder_to_decoder": "decoder.embed",
    "decoder.decoder_norm": "decoder.norm", "decoder.norm": "decoder.norm",
    "decoder.decoder_pred": "decoder.pred", "decoder.head": "decoder.pred",
}
_TABLES = {"decoder.decoder_pos_embed"}  # fixed tables: buffers on our side (not state), see _copy_decoder_table


def hf_filter_fn(state_dict: dict[str, torch.Tensor], model: SSAT) -> dict[str, torch.Tensor]:
    """A ``ViTMAEForPreTraining`` / ``VideoMAEForPreTraining`` state dict -> ``model``'s keys (pure, no I/O).

    q/k/v projections [D, D] each become ``attn.qkv`` [3D, D]; VideoMAE has no key bias (zeros in ``qkv.bias``)
    and no ``encoder_to_decoder`` bias (zeros). An HF key this does not know, or a tensor whose shape does not fit
    ``model``, is a one-line error naming it.
    """
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        layer = _LAYER.match(key)
        module, _, param = key.rpartition(".")
        if layer:
            dst = f"{'decoder' if layer['stack'].startswith('decoder') else 'encoder'}.blocks.{layer['i']}."
            if layer["leaf"] in _QKV:
                qkv.setdefault(f"{dst}attn.qkv.{layer['param']}", {})[_QKV[layer["leaf"]]] = value
            elif layer["leaf"] in _BLOCK:
                out[f"{dst}{_BLOCK[layer['leaf']]}.{layer['param']}"] = value
            else:
                raise KeyError(f"{key}: unknown transformers layer entry")
        elif key in _RENAME:
            out[_RENAME[key]] = value
        elif module in _RENAME:
            out[f"{_RENAME[module]}.{param}"] = value
        elif key not in _TABLES:
            raise KeyError(f"{key}: unknown transformers entry")
    for key, parts in qkv.items():
        k = parts["k"] if "k" in parts else torch.zeros_like(parts["q"])  # VideoMAE: no key bias
        out[key] = torch.cat([parts["q"], k, parts["v"]])
    if "decoder.embed.weight" in out and "decoder.embed.bias" not in out:  # VideoMAE's encoder_to_decoder
        out["decoder.embed.bias"] = torch.zeros_like(target["decoder.embed.bias"])
    for key, value in out.items():
        if key not in target or target[key].shape != value.shape:
            have = tuple(target[key].shape) if key in target else "absent"
            raise ValueError(f"{key}: transformers gives {tuple(value.shape)}, our model has {have}")
    return out


def load_from_hf(ours: SSAT, theirs: nn.Module) -> None:
    """Copy ``theirs`` into ``ours``; only our classifier (which transformers' pre-training models lack) stays."""
    missing, unexpected = ours.load_state_dict(hf_filter_fn(theirs.state_dict(), ours), strict=False)
    assert unexpected == [] and all(k.startswith(("encoder.head.", "encoder.fc_norm.")) for k in missing), missing


# ------------------------------------------------------------------------------------------ recording and comparing


@contextlib.contextmanager
def recording(points: dict[str, tuple[nn.Module, str]]):
    """Record, under each name, the input (``"in"``) or output (``"out"``) of a module while the block runs."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, (module, where) in points.items():
        if where == "in":
            def pre(m, args, kwargs, name=name):
                seen[name] = (args[0] if args else kwargs["hidden_states"]).detach()
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def post(m, args, out, name=name):
                seen[name] = (out[0] if isinstance(out, tuple) else out).detach()  # transformers 4 layers: tuples
            handles.append(module.register_forward_hook(post))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def assert_flow(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], order: list[str]) -> None:
    """Assert each named tensor equal, in data-flow ``order``: the message names the first one that differs."""
    for name in order:
        a, b = ours[name].float(), theirs[name].float()
        assert a.shape == b.shape, f"{name}: shape ours {tuple(a.shape)} vs transformers {tuple(b.shape)}"
        torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL,
                                   msg=lambda m, name=name: f"{name} is the first tensor to differ (ours vs "
                                                            f"transformers, data-flow order): {m}")


def _fix_mask(model: SSAT, masks: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    """Make ``model``'s masked pass use ``masks`` (ids_keep, mask, ids_restore) instead of a fresh draw."""
    model.random_mask = lambda batch, device: masks


def _perturb(model: nn.Module) -> None:
    """Nudge every trainable weight off its init (LayerNorms off 1 / 0, mask tokens off 0), tables untouched."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p), alpha=0.05)


def _block_points(prefix: str, stack: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    return {f"{prefix} block {i}": (block, "out") for i, block in enumerate(stack)}


# ------------------------------------------------------------------------------------------ image: ViTMAE


def _vitmae_like(ours: SSAT, norm_pix_loss: bool) -> ViTMAEForPreTraining:
    """A random ``ViTMAEForPreTraining`` of ``ours``' geometry, with MAE's sin-cos tables in place."""
    enc, dec = ours.encoder, ours.decoder
    config = ViTMAEConfig(
        image_size=enc.img_size, patch_size=enc.patch_size, num_channels=enc.in_chans, hidden_size=enc.embed_dim,
        num_hidden_layers=len(enc.blocks), num_attention_heads=enc.blocks[0].attn.num_heads,
        intermediate_size=enc.blocks[0].mlp.fc1.out_features, qkv_bias=True, hidden_act="gelu",
        layer_norm_eps=enc.norm.eps,  # transformers' default is 1e-12; timm's and MAE's 1e-6
        decoder_hidden_size=dec.embed.out_features, decoder_num_hidden_layers=len(dec.blocks),
        decoder_num_attention_heads=dec.blocks[0].attn.num_heads,
        decoder_intermediate_size=dec.blocks[0].mlp.fc1.out_features,
        mask_ratio=ours.mask_ratio, norm_pix_loss=norm_pix_loss)
    theirs = ViTMAEForPreTraining(config).eval()
    # transformers 5 builds a model from a config with zero position tables and class token (initialize_weights
    # returns early once the patch projection is marked initialised; the decoder table is never filled): fill them
    # with its own initialisers, as a pre-trained checkpoint would bring them
    emb = theirs.vit.embeddings
    emb.patch_embeddings.projection._is_hf_initialized = False
    emb.initialize_weights()
    theirs.decoder.initialize_weights(emb.patch_embeddings.num_patches)
    assert emb.position_embeddings[0, 1:].abs().sum() > 0 and theirs.decoder.decoder_pos_embed.abs().sum() > 0
    _perturb(theirs)
    return theirs


def _copy_decoder_table(ours: SSAT, table: torch.Tensor, grid: tuple[int, ...]) -> None:
    """Put transformers' decoder table (``table`` [1, L, E], no class-token row) into our decoder's buffer."""
    assert torch.equal(ours.decoder.pos_embed, sincos_grid(table.shape[-1], grid)[None]), "our decoder table moved"
    with torch.no_grad():
        ours.decoder.pos_embed.copy_(table)


def _image_pair(tiny_cfg, norm_pix_loss: bool) -> tuple[SSAT, ViTMAEForPreTraining]:
    torch.manual_seed(0)
    ours = build_model(tiny_cfg("model.in_chans=3", "model.patch_size=4", "decoder.embed_dim=32", "decoder.depth=2",
                                "ssat.lam=0.0", f"ssat.norm_pix_loss={norm_pix_loss}"), num_classes=2).eval()
    theirs = _vitmae_like(ours, norm_pix_loss)
    load_from_hf(ours, theirs)
    table = theirs.decoder.decoder_pos_embed.detach()  # [1, 1 + L, E]
    assert table[0, 0].abs().sum() == 0, "MAE's decoder gives the class token no position; ours adds none to it"
    half = table.shape[-1] // 2  # ours is [rows | columns], MAE's [columns | rows] (docs/fidelity.md)
    torch.testing.assert_close(ours.decoder.pos_embed, torch.cat([table[..., half:], table[..., :half]], -1)[:, 1:])
    _copy_decoder_table(ours, table[:, 1:], ours.encoder.grid_size)
    return ours, theirs


def _image_points(ours: SSAT, theirs: ViTMAEForPreTraining) -> tuple[dict, dict]:
    enc, dec, vit, hdec = ours.encoder, ours.decoder, theirs.vit, theirs.decoder
    mine = {"patch embed": (enc.patch_embed, "out"), "tokens after pos-embed (class + visible)": (enc.blocks, "in"),
            **_block_points("encoder", enc.blocks), "encoder final norm": (enc.norm, "out"),
            "decoder tokens (embedded, mask tokens, positions)": (dec.blocks, "in"),
            **_block_points("decoder", dec.blocks), "decoder norm": (dec.norm, "out")}
    hf_layers = vit.layers if hasattr(vit, "layers") else vit.encoder.layer  # transformers 5 | 4
    hers = {"patch embed": (vit.embeddings.patch_embeddings, "out"),
            "tokens after pos-embed (class + visible)": (hf_layers[0], "in"),
            **_block_points("encoder", hf_layers), "encoder final norm": (vit.layernorm, "out"),
            "decoder tokens (embedded, mask tokens, positions)": (hdec.decoder_layers[0], "in"),
            **_block_points("decoder", hdec.decoder_layers), "decoder norm": (hdec.decoder_norm, "out")}
    return mine, hers


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_image_branch_equals_vitmae(tiny_cfg, norm_pix_loss):
    """Encoder on the visible tokens, decoder, target and masked-patch loss equal ``ViTMAEForPreTraining``'s."""
    ours, theirs = _image_pair(tiny_cfg, norm_pix_loss)
    x = astronaut_clip(frames=2, size=ours.encoder.img_size, step=32)[0].transpose(0, 1)  # [2, 3, 32, 32]
    num_tokens = ours.encoder.grid_size[0] * ours.encoder.grid_size[1]
    masks = random_masking(2, num_tokens, ours.mask_ratio, generator=torch.Generator().manual_seed(1))
    _fix_mask(ours, masks)
    noise = masks[2].float() / num_tokens  # ids_restore = each token's rank: argsort(noise) is our shuffle
    mine, hers = _image_points(ours, theirs)
    with torch.no_grad(), recording(mine) as a, recording(hers) as b:
        out = ours(x)
        loss, _ = ours.loss(out, x, None)
        ref = theirs(pixel_values=x, noise=noise)
    a.update({"mask": out.mask, "prediction": out.pred, "target (patches)": ours.patchify(x), "loss": loss})
    b.update({"mask": ref.mask, "prediction": ref.logits, "target (patches)": theirs.patchify(x), "loss": ref.loss})
    order = ["mask", "patch embed", "tokens after pos-embed (class + visible)",
             *[f"encoder block {i}" for i in range(len(ours.encoder.blocks))], "encoder final norm",
             "decoder tokens (embedded, mask tokens, positions)",
             *[f"decoder block {i}" for i in range(len(ours.decoder.blocks))], "decoder norm", "prediction",
             "target (patches)", "loss"]
    assert_flow(a, b, order)


# ------------------------------------------------------------------------------------------ video: VideoMAE


def _videomae_like(ours: SSAT, norm_pix_loss: bool) -> VideoMAEForPreTraining:
    """A random ``VideoMAEForPreTraining`` of ``ours``' geometry (its pre-training encoder: a final LayerNorm)."""
    enc, dec = ours.encoder, ours.decoder
    config = VideoMAEConfig(
        image_size=enc.img_size, patch_size=enc.patch_size, num_channels=enc.in_chans, num_frames=enc.num_frames,
        tubelet_size=enc.tubelet_size, hidden_size=enc.embed_dim, num_hidden_layers=len(enc.blocks),
        num_attention_heads=enc.blocks[0].attn.num_heads, intermediate_size=enc.blocks[0].mlp.fc1.out_features,
        qkv_bias=True, hidden_act="gelu", layer_norm_eps=enc.norm.eps, use_mean_pooling=False,
        decoder_hidden_size=dec.embed.out_features, decoder_num_hidden_layers=len(dec.blocks),
        decoder_num_attention_heads=dec.blocks[0].attn.num_heads,
        decoder_intermediate_size=dec.blocks[0].mlp.fc1.out_features, norm_pix_loss=norm_pix_loss)
    theirs = VideoMAEForPreTraining(config).eval()
    # transformers gives the decoder's last LayerNorm torch's default eps 1e-5; MCG-NJU's VideoMAE (and ours) 1e-6
    theirs.decoder.norm.eps = dec.norm.eps
    _perturb(theirs)
    return theirs


def _video_pair(tiny_cfg, norm_pix_loss: bool, video_target: str) -> tuple[SSAT, VideoMAEForPreTraining]:
    torch.manual_seed(0)
    cfg = tiny_cfg("model.name=videomae_test", "model.in_chans=3", "model.num_frames=4", "model.tubelet_size=2",
                   "model.pos_embed=1d", "decoder.embed_dim=32", "decoder.depth=2", "ssat.lam=0.0",
                   f"ssat.norm_pix_loss={norm_pix_loss}", f"ssat.video_target={video_target}")
    ours = build_model(cfg, num_classes=2).eval()
    theirs = _videomae_like(ours, norm_pix_loss)
    load_from_hf(ours, theirs)
    num_tokens, width = ours.encoder.pos_embed.shape[1:]
    assert torch.equal(theirs.videomae.embeddings.position_embeddings, videomae_table(width, num_tokens)[None])
    assert torch.equal(ours.encoder.pos_embed, theirs.videomae.embeddings.position_embeddings)  # pos_embed: 1d
    table = theirs.position_embeddings  # [1, L, E]: VideoMAE's decoder table is its 1-D one too
    assert torch.equal(table, videomae_table(table.shape[-1], num_tokens)[None])
    _copy_decoder_table(ours, table, ours.encoder.grid_size)
    return ours, theirs


def _video_points(ours: SSAT, theirs: VideoMAEForPreTraining) -> tuple[dict, dict]:
    enc, dec, vm, hdec = ours.encoder, ours.decoder, theirs.videomae, theirs.decoder
    mine = {"patch embed": (enc.patch_embed, "out"), "tokens after pos-embed (visible)": (enc.blocks, "in"),
            **_block_points("encoder", enc.blocks), "encoder final norm": (enc.norm, "out"),
            "decoder tokens (embedded, mask tokens, positions)": (dec.blocks, "in"),
            **_block_points("decoder", dec.blocks), "decoder norm": (dec.norm, "out")}
    hers = {"patch embed": (vm.embeddings.patch_embeddings, "out"),
            "tokens after pos-embed (visible)": (vm.encoder.layer[0], "in"),
            **_block_points("encoder", vm.encoder.layer), "encoder final norm": (vm.layernorm, "out"),
            "decoder tokens (embedded, mask tokens, positions)": (hdec.decoder_layers[0], "in"),
            **_block_points("decoder", hdec.decoder_layers), "decoder norm": (hdec.norm, "out")}
    return mine, hers


def _in_videomae_order(seen: dict[str, torch.Tensor], ids_keep: torch.Tensor, mask: torch.Tensor) -> dict:
    """Our recorded tensors in VideoMAE's token order: visible tokens by index (ours follow ``ids_keep``'s
    shuffle), the decoder's as [visible | masked] by index (ours are unshuffled); its norm, the prediction and the
    target on the masked tokens only."""
    visible_sorted = torch.argsort(ids_keep, dim=1)  # [B, L_keep]: our visible tokens -> increasing index
    videomae_order = torch.argsort(mask, dim=1, stable=True)  # [B, L]: visible, then masked, each by index
    masked = videomae_order[:, ids_keep.shape[1]:]  # [B, L_mask]
    out = {}
    for name, t in seen.items():
        if name.startswith(("tokens after", "encoder")):
            out[name] = gather_tokens(t, visible_sorted)
        elif name.startswith(("decoder norm", "prediction", "target")):
            out[name] = gather_tokens(t, masked)
        elif name.startswith("decoder"):
            out[name] = gather_tokens(t, videomae_order)
        else:
            out[name] = t
    return out


class _RecordingMSE(nn.MSELoss):
    """VideoMAE's loss module, keeping what it compares: transformers computes its target inside ``forward``."""
    seen: dict[str, torch.Tensor] = {}

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _RecordingMSE.seen.update({"prediction (masked)": input.detach(), "target (masked)": target.detach()})
        return super().forward(input, target)


def _run_video(ours: SSAT, theirs: VideoMAEForPreTraining, monkeypatch) -> tuple[dict, dict]:
    """Both models on one real clip and one tube mask -> (ours, theirs): every compared tensor by name."""
    enc = ours.encoder
    x = astronaut_clip(frames=enc.num_frames, size=enc.img_size, step=4)  # [1, 3, T, H, W]
    x = torch.cat([x, x.flip(-1)])  # two clips
    masks = tube_masking(2, enc.grid_size, ours.mask_ratio, generator=torch.Generator().manual_seed(2))
    _fix_mask(ours, masks)
    ids_keep, mask, _ = masks
    monkeypatch.setattr(modeling_videomae, "MSELoss", _RecordingMSE)
    _RecordingMSE.seen = {}
    mine, hers = _video_points(ours, theirs)
    with torch.no_grad(), recording(mine) as a, recording(hers) as b:
        out = ours(x)
        loss, _ = ours.loss(out, x, None)
        ref = theirs(pixel_values=x.transpose(1, 2), bool_masked_pos=mask.bool())  # theirs: [B, T, C, H, W]
    assert _RecordingMSE.seen, "transformers no longer computes VideoMAE's loss with MSELoss: record it elsewhere"
    a.update({"prediction (masked)": out.pred, "target (masked)": _our_target(ours, x), "loss": loss})
    b.update({**_RecordingMSE.seen, "loss": ref.loss})
    return _in_videomae_order(a, ids_keep, mask), b


def _our_target(ours: SSAT, x: torch.Tensor) -> torch.Tensor:
    """The target our loss compares the prediction with [B, L, patch_dim] (standardised as ``ssat_loss`` does)."""
    if ours.video_target == "videomae":
        return videomae_target(x, ours.encoder.patch_size, ours.encoder.tubelet_size, ours.norm_pix_loss)
    target = ours.patchify(x)
    if not ours.norm_pix_loss:
        return target
    var, mean = torch.var_mean(target, dim=-1, keepdim=True)
    return (target - mean) / torch.sqrt(var + 1e-6)


def _video_order(ours: SSAT) -> list[str]:
    return ["patch embed", "tokens after pos-embed (visible)",
            *[f"encoder block {i}" for i in range(len(ours.encoder.blocks))], "encoder final norm",
            "decoder tokens (embedded, mask tokens, positions)",
            *[f"decoder block {i}" for i in range(len(ours.decoder.blocks))], "decoder norm", "prediction (masked)",
            "target (masked)", "loss"]


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_video_branch_with_videomae_target_equals_videomae(tiny_cfg, monkeypatch, norm_pix_loss):
    """``ssat.video_target: videomae``: encoder, decoder, target and loss equal ``VideoMAEForPreTraining``'s."""
    ours, theirs = _video_pair(tiny_cfg, norm_pix_loss, "videomae")
    a, b = _run_video(ours, theirs, monkeypatch)
    assert_flow(a, b, _video_order(ours))


def test_video_branch_with_joint_target_differs_from_videomae_in_the_target_only(tiny_cfg, monkeypatch):
    """The default ``joint`` target (MAE's rule per tubelet) is the one step where we differ from VideoMAE."""
    ours, theirs = _video_pair(tiny_cfg, True, "joint")
    a, b = _run_video(ours, theirs, monkeypatch)
    order = _video_order(ours)
    assert_flow(a, b, order[:order.index("target (masked)")])
    gap = (a["target (masked)"] - b["target (masked)"]).pow(2).mean()
    assert gap > 0.05, f"the joint and VideoMAE targets should differ on a real clip; mean squared gap {gap:.3g}"
    assert (a["loss"] - b["loss"]).abs() > 1e-3
