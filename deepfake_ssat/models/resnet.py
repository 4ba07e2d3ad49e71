"""ResNet-50 (torchvision) as a classification-only baseline with the encoder interface.

``masking = None``: it has no SSAT masked pass, so it trains with ``lam = 1`` and no decoder.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.resnet import Bottleneck, ResNet

from .encoder import EncoderDefaults
from .hier import frozen_bn_stats, mask_from_keep, upsample_mask
from .masking import gather_tokens
from .registry import register_model


class ResNetEncoder(EncoderDefaults, ResNet):
    """torchvision ResNet whose features are tokens: the last map [B, 2048, h, w] as [B, h*w, 2048].

    ``patch_size`` (32) / ``grid_size`` describe those output tokens; ``embed`` is the stem
    (conv, BN, ReLU, max-pool; stride 4).
    """

    masking = None

    def __init__(
            self,
            layers: tuple[int, ...] = (3, 4, 6, 3),
            img_size: int = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
    ):
        super().__init__(Bottleneck, list(layers), num_classes=num_classes)
        if in_chans != 3:
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
        self.patch_size = 32
        if img_size % self.patch_size:
            raise ValueError(f"img_size {img_size} must be a multiple of the total stride {self.patch_size}")
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = self.fc.in_features
        self.num_prefix_tokens = 0
        self.grid_size = (img_size // self.patch_size,) * 2
        self.mask_grid_size, self.mask_patch_size = self.grid_size, self.patch_size  # unused: no masked pass
        self.stem_grid = (img_size // 4,) * 2

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> stem map [B, 64, H/4, W/4]."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Stem map [B, 64, H/4, W/4] -> output tokens [B, h*w, 2048]."""
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # [B, 2048, h, w]
        return x.flatten(2).transpose(1, 2)

    def forward_tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Stem map [B, 64, H/4, W/4] -> [B, h*w, 2048]; with ``ids_keep`` [B, K] the other output
        patches are zeroed in the stem map and the kept tokens are returned [B, K, 2048]."""
        if ids_keep is None:
            return self._encode(x)
        mask = mask_from_keep(ids_keep, self.grid_size[0] * self.grid_size[1])
        x = x * (1 - upsample_mask(mask, self.grid_size, self.stem_grid)).unsqueeze(1).to(x.dtype)
        with frozen_bn_stats(self):
            x = self._encode(x)
        return gather_tokens(x, ids_keep)

    def forward_features(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, H, W] -> [B, h*w, 2048] (or [B, K, 2048] for ``ids_keep``)."""
        return self.forward_tokens(self.embed(x), ids_keep)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens [B, h*w, 2048] -> logits [B, num_classes] (global average pool + fc)."""
        x = x.mean(dim=1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def resnet50(**kwargs) -> ResNetEncoder:
    """ResNet-50 baseline (25.6M params at 1000 classes); classification only (``ssat.lam = 1``)."""
    return ResNetEncoder(**{"layers": (3, 4, 6, 3), **kwargs})
