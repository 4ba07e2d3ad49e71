"""VideoMAE-style video ViT: tubelet embedding, fixed sin-cos positions, timm blocks, mean-pool head."""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block

from .encoder import EncoderDefaults
from .masking import gather_tokens
from .pos_embed import sincos_grid, videomae_table
from .registry import register_model
from .vit import fit_to_model


class TubeletEmbed(nn.Module):
    """Clip [B, C, T, H, W] -> tokens [B, T/t * H/p * W/p, D] via a Conv3d of kernel = stride = (t, p, p)."""

    def __init__(
            self,
            img_size: int = 224,
            patch_size: int = 16,
            num_frames: int = 16,
            tubelet_size: int = 2,
            in_chans: int = 3,
            embed_dim: int = 768,
    ):
        super().__init__()
        if img_size % patch_size or num_frames % tubelet_size:
            raise ValueError(
                f"img_size {img_size} must be a multiple of patch_size {patch_size} and num_frames "
                f"{num_frames} a multiple of tubelet_size {tubelet_size}")
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.grid_size = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        self.proj = nn.Conv3d(
            in_chans, embed_dim,
            kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # [B, D, T', H', W']
        return x.flatten(2).transpose(1, 2)  # [B, T'*H'*W', D]


class VideoViT(EncoderDefaults, nn.Module):
    """ViT over space-time tubelets, as in VideoMAE (no class token, mean-pooled head).

    ``forward_features(x, ids_keep)`` runs the blocks over all tokens, or only the visible ones
    when ``ids_keep`` [B, L_keep] is given (the MAE encoder pass). ``forward_head`` pools and
    classifies.
    """

    def __init__(
            self,
            img_size: int = 224,
            patch_size: int = 16,
            num_frames: int = 16,
            tubelet_size: int = 2,
            in_chans: int = 3,
            num_classes: int = 2,
            embed_dim: int = 768,
            depth: int = 12,
            num_heads: int = 12,
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
            pos_embed: str = "3d",
            norm_layer: Callable[..., nn.Module] = partial(nn.LayerNorm, eps=1e-6),
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 0
        self.patch_embed = TubeletEmbed(img_size, patch_size, num_frames, tubelet_size, in_chans, embed_dim)
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.grid_size = self.patch_embed.grid_size
        self.mask_grid_size, self.mask_patch_size = self.grid_size, patch_size  # tube masks: per (t, h, w) token
        if pos_embed == "3d":
            table = sincos_grid(embed_dim, self.grid_size)
        elif pos_embed == "1d":  # VideoMAE's own table (needed to use its checkpoints as trained)
            table = videomae_table(embed_dim, self.patch_embed.num_patches)
        else:
            raise ValueError(f"pos_embed must be '3d' or '1d', got {pos_embed!r}")
        self.register_buffer("pos_embed", table.unsqueeze(0), persistent=False)  # [1, L, D]
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=dpr[i], norm_layer=norm_layer)
            for i in range(depth)
        ])
        self.norm = norm_layer(embed_dim)
        self.fc_norm = norm_layer(embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()  # the position embedding is a fixed buffer; norms and biases are 1-D (no decay)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T, H, W] -> tubelet tokens with positions [B, L, D]."""
        return self.patch_embed(x) + self.pos_embed.to(x.dtype)

    def forward_tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Embedded tokens [B, L, D] -> encoded [B, L, D], or [B, L_keep, D] for the visible ``ids_keep``."""
        if ids_keep is not None:
            x = gather_tokens(x, ids_keep)  # [B, L_keep, D]
        x = self.blocks(x)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, T, H, W] -> tokens [B, L, D], or [B, L_keep, D] for the visible ``ids_keep``."""
        return self.forward_tokens(self.embed(x), ids_keep)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens [B, L, D] -> logits [B, num_classes] (mean-pool, LayerNorm, linear)."""
        x = self.fc_norm(x.mean(dim=1))  # [B, D]
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def videomae_key(key: str) -> str | None:
    """Our key for an official MCG-NJU VideoMAE key; None for entries the encoder does not take.

    Strips ``module.`` (DDP) and the pre-training model's ``encoder.`` prefix; maps
    ``attn.q_bias``/``attn.v_bias`` to ``attn.qkv.bias``. None for the pre-training decoder
    (``decoder.*``, ``encoder_to_decoder.*``, ``mask_token``) and any ``pos_embed`` (ours is a
    fixed table recomputed from the grid, not a weight).
    """
    key = key.removeprefix("module.")
    if key.startswith(("decoder.", "encoder_to_decoder.")) or key == "mask_token":
        return None
    key = key.removeprefix("encoder.")
    if key == "pos_embed":
        return None
    if key.endswith((".attn.q_bias", ".attn.v_bias")):
        return key[:-len("q_bias")] + "qkv.bias"
    return key


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: VideoViT) -> dict[str, torch.Tensor]:
    """Official VideoMAE state dict -> ``model``'s keys (timm style: pure, no I/O, no unwrapping).

    Takes a pre-training checkpoint (``encoder.patch_embed.proj.weight`` [D, C, t, p, p],
    ``encoder.blocks.N.*``, ``encoder.norm.*`` + decoder entries) or a fine-tuned one (same
    keys without ``encoder.``, plus ``fc_norm.*`` and ``head.*``, no ``norm.*``); keys are renamed
    by :func:`videomae_key`. VideoMAE's q/v biases [D] become ``attn.qkv.bias`` [3D] =
    cat(q_bias, 0, v_bias): its key projection has no bias. ``head.*`` is dropped when it does not
    fit (other ``num_classes``); any other misfit (tubelet, patch or embed dim) raises a one-line
    ``ValueError`` naming the key and both shapes.

    A fine-tuned VideoMAE has no ``norm`` (Identity; it norms after pooling with ``fc_norm``) while
    ``VideoViT`` applies ``norm`` before pooling. ``norm`` is left out, keeps its fresh init (identity
    affine) and is reported missing by ``load_state_dict``: such checkpoints initialise fine-tuning,
    they do not reproduce the Kinetics logits.
    """
    out = {}
    for k, v in state_dict.items():
        new = videomae_key(k)
        if new is None or k.endswith(".attn.v_bias"):
            continue
        if k.endswith(".attn.q_bias"):
            v_key = k[:-len("q_bias")] + "v_bias"
            if v_key not in state_dict:
                raise ValueError(f"{k}: has no matching {v_key} to build {new}")
            v = torch.cat([v, torch.zeros_like(v), state_dict[v_key]])  # [3D]
        out[new] = v
    return fit_to_model(out, model)


@register_model
def videomae_small(**kwargs) -> VideoViT:
    """VideoMAE ViT-S/16, 16 frames, tubelet 2 (embed 384, depth 12, 6 heads)."""
    return VideoViT(**{"embed_dim": 384, "depth": 12, "num_heads": 6, **kwargs})


@register_model
def videomae_base(**kwargs) -> VideoViT:
    """VideoMAE ViT-B/16, 16 frames, tubelet 2 (embed 768, depth 12, 12 heads)."""
    return VideoViT(**{"embed_dim": 768, "depth": 12, "num_heads": 12, **kwargs})


@register_model
def videomae_test(**kwargs) -> VideoViT:
    """Tiny video ViT for tests and CPU demos: 8 frames of 32 px, patch 8, width 64, depth 2."""
    return VideoViT(**{
        "img_size": 32, "patch_size": 8, "num_frames": 8, "embed_dim": 64, "depth": 2, "num_heads": 4,
        **kwargs,
    })
