"""MAE decoder for image (2D grid) and video (3D grid) encoders."""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block

from .pos_embed import sincos_grid


class MAEDecoder(nn.Module):
    """Visible encoder tokens + learned mask tokens -> pixels of every patch / tubelet.

    Projects to the decoder width, appends mask tokens, unshuffles them with ``ids_restore``,
    adds a fixed sin-cos position embedding over ``grid_size``, runs ``depth`` timm blocks and
    predicts ``patch_dim`` values per token.
    """

    def __init__(
            self,
            in_dim: int,
            grid_size: tuple[int, ...],
            patch_dim: int,
            num_prefix_tokens: int = 0,
            embed_dim: int = 128,
            depth: int = 2,
            num_heads: int = 4,
            mlp_ratio: float = 4.0,
            norm_layer: Callable[..., nn.Module] = partial(nn.LayerNorm, eps=1e-6),
    ):
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.embed = nn.Linear(in_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", sincos_grid(embed_dim, grid_size).unsqueeze(0), persistent=False)
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(depth)
        ])
        self.norm = norm_layer(embed_dim)
        self.pred = nn.Linear(embed_dim, patch_dim)
        trunc_normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    def forward(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """x [B, P + L_keep, D_enc], ids_restore [B, L] -> prediction [B, L, patch_dim]."""
        x = self.embed(x)  # [B, P + L_keep, E]
        prefix, visible = x[:, :self.num_prefix_tokens], x[:, self.num_prefix_tokens:]
        batch, length = ids_restore.shape
        masked = self.mask_token.expand(batch, length - visible.shape[1], -1).to(x.dtype)  # [B, L - L_keep, E]
        x = torch.cat([visible, masked], dim=1)  # [B, L, E] in shuffled order
        x = torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # [B, L, E] unshuffled
        x = torch.cat([prefix, x + self.pos_embed.to(x.dtype)], dim=1)  # [B, P + L, E]
        x = self.norm(self.blocks(x))
        return self.pred(x[:, self.num_prefix_tokens:])  # [B, L, patch_dim]
