"""The other self-supervised auxiliary tasks of the paper's Table 4: SimCLR and DINO.

Both read the encoder's pooled features (one [B, D] per view) of several augmented views of each image, so
they train under :class:`SSATMultiView` rather than :class:`~deepfake_ssat.models.ssat.SSAT` (MAE, one view).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import MLP


def pooled_features(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Images [B, C, H, W] -> the encoder's pooled (pre-logits) features [B, D]."""
    return encoder.forward_head(encoder.forward_features(x), pre_logits=True)


def classifier(encoder: nn.Module) -> nn.Module:
    """The layer mapping pooled features to logits: ``get_classifier()`` (timm ViT / Swin, whose
    ``head`` also pools), else ``fc`` (torchvision ResNet), else ``head`` (CvT)."""
    if hasattr(encoder, "get_classifier"):
        return encoder.get_classifier()
    return encoder.fc if isinstance(getattr(encoder, "fc", None), nn.Linear) else encoder.head


def drop_classifier(encoder: nn.Module) -> nn.Module:
    """``encoder`` without its classifier (``reset_classifier(0)`` where it has one)."""
    if hasattr(encoder, "reset_classifier"):
        encoder.reset_classifier(0)
    elif isinstance(getattr(encoder, "fc", None), nn.Linear):
        encoder.fc = nn.Identity()
    else:
        encoder.head = nn.Identity()
    return encoder


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: mean over the 2N samples of a 2N-way (self excluded) softmax cross-entropy
    whose target is the other view of the same image. z1, z2 [N, P] -> scalar."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2N, P]
    sim = z @ z.T / temperature  # [2N, 2N]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)  # [2N]: index of the other view
    return F.cross_entropy(sim, target)


class SimCLRAux(nn.Module):
    """SimCLR: MLP projection of two views' features, NT-Xent between them (temperature ``temperature``)."""

    def __init__(
            self,
            in_dim: int,
            proj_dim: int = 128,
            hidden_dim: int = 512,
            temperature: float = 0.1,
    ):
        super().__init__()
        self.head = MLP(in_dim, [hidden_dim, proj_dim], activation_layer=nn.ReLU)
        self.temperature = temperature

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Projections z1, z2 [N, proj_dim] of the two views -> NT-Xent (scalar)."""
        return nt_xent(z1, z2, self.temperature)

    def forward(self, features: list[torch.Tensor], views: list[torch.Tensor]) -> torch.Tensor:
        """features: two [B, D] (views unused) -> NT-Xent of their projections (scalar)."""
        if len(features) != 2:
            raise ValueError(f"SimCLR contrasts exactly 2 views, got {len(features)}")
        return self.loss(self.head(features[0]), self.head(features[1]))


class DINOHead(nn.Module):
    """DINO projection: 3-layer MLP to ``bottleneck_dim``, L2 normalisation, weight-normalised
    linear layer (norm fixed at 1) to ``out_dim`` prototypes. [B, in_dim] -> [B, out_dim]."""

    def __init__(
            self,
            in_dim: int,
            out_dim: int,
            hidden_dim: int,
            bottleneck_dim: int,
    ):
        super().__init__()
        self.mlp = MLP(in_dim, [hidden_dim, hidden_dim, bottleneck_dim], activation_layer=nn.GELU)
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x), dim=-1))


class DINOAux(nn.Module):
    """DINO self-distillation: a student head on the shared encoder, and a teacher (encoder + head)
    that is an EMA of the student and never receives gradients.

    Views: the first ``min(2, V)`` are global crops, seen by the teacher; the student sees all V
    (multi-crop: pass more, smaller views). Loss: mean over pairs (teacher view a, student view b),
    a != b, of ``CE(softmax((t_a - center) / teacher_temp), softmax(s_b / student_temp))``; the
    center is an EMA (``center_momentum``) of the teacher's batch-mean output.

    Call :meth:`init_teacher` with the student encoder once, and :meth:`update_teacher` after
    every optimizer step.
    """

    num_global = 2

    def __init__(
            self,
            in_dim: int,
            out_dim: int = 1024,
            hidden_dim: int = 512,
            bottleneck_dim: int = 128,
            teacher_temp: float = 0.04,
            student_temp: float = 0.1,
            center_momentum: float = 0.9,
            ema: float = 0.996,
    ):
        super().__init__()
        self.head = DINOHead(in_dim, out_dim, hidden_dim, bottleneck_dim)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.teacher_encoder: nn.Module | None = None
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_temp = teacher_temp
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.ema = ema

    def init_teacher(self, student_encoder: nn.Module) -> None:
        """Teacher encoder = a frozen copy of ``student_encoder`` without its classifier."""
        teacher = drop_classifier(copy.deepcopy(student_encoder))
        self.teacher_encoder = teacher.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> DINOAux:
        """The teacher always runs in eval mode (no dropout / drop-path)."""
        super().train(mode)
        if self.teacher_encoder is not None:
            self.teacher_encoder.eval()
        self.teacher_head.eval()
        return self

    @torch.no_grad()
    def teacher_logits(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Teacher outputs [B, out_dim] for the global views (the first ``min(2, V)``)."""
        if self.teacher_encoder is None:
            raise RuntimeError("DINOAux.init_teacher(encoder) was never called")
        return [self.teacher_head(pooled_features(self.teacher_encoder, v)) for v in views[:self.num_global]]

    def forward(self, features: list[torch.Tensor], views: list[torch.Tensor]) -> torch.Tensor:
        """Student features (V of [B, D]) and the views -> DINO loss (scalar); updates the center when training."""
        if len(views) < 2:
            raise ValueError(f"DINO needs at least 2 views, got {len(views)}")
        teacher = self.teacher_logits(views)  # min(2, V) of [B, K]
        student = [F.log_softmax(self.head(f).float() / self.student_temp, dim=-1) for f in features]  # V of [B, K]
        targets = [F.softmax((t.float() - self.center) / self.teacher_temp, dim=-1) for t in teacher]  # [B, K] each
        losses = [(-q * log_p).sum(dim=-1).mean()
                  for a, q in enumerate(targets) for b, log_p in enumerate(student) if a != b]
        if self.training:
            self.update_center(torch.cat(teacher))
        return torch.stack(losses).mean()

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """center <- m * center + (1 - m) * mean of ``teacher_out`` [N, K] (over every process under DDP)."""
        batch_center = teacher_out.float().sum(dim=0, keepdim=True)  # [1, K]
        count = torch.tensor(float(teacher_out.shape[0]), device=teacher_out.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(batch_center / count, alpha=1.0 - self.center_momentum)

    @torch.no_grad()
    def update_teacher(self, student_encoder: nn.Module, momentum: float | None = None) -> None:
        """teacher <- m * teacher + (1 - m) * student, for the encoder (by parameter name) and the head;
        ``momentum`` defaults to ``ema`` (DINO raises it towards 1 on a cosine schedule).

        Buffers (BatchNorm running statistics of CvT / ResNet) are copied from the student: the
        teacher runs in eval mode and would otherwise keep its statistics from initialisation."""
        m = self.ema if momentum is None else momentum
        student = dict(student_encoder.named_parameters())
        pairs = [(t, student[name]) for name, t in self.teacher_encoder.named_parameters()]
        pairs += list(zip(self.teacher_head.parameters(), self.head.parameters()))
        for t, s in pairs:
            t.mul_(m).add_(s.detach(), alpha=1.0 - m)
        student_buffers = dict(student_encoder.named_buffers())
        for name, t in self.teacher_encoder.named_buffers():
            if name in student_buffers and t.is_floating_point():
                t.copy_(student_buffers[name])


class SSATMultiView(nn.Module):
    """Encoder (with its classifier) + a multi-view auxiliary task (:class:`SimCLRAux`, :class:`DINOAux`).

    ``forward(views, labels)``: the first view's full pass feeds both the classifier and the
    auxiliary task, the other views only the auxiliary task:

    ``L = lam * CE(head(f(view_0)), y) + (1 - lam) * aux(f(view_0), f(view_1), ...)``

    An auxiliary module's ``forward(features, views)`` takes the student's pooled features (one
    [B, D] per view) and the views themselves (DINO's teacher encodes them) and returns a scalar.
    """

    num_views = 2  # two augmentations of each training image

    def __init__(
            self,
            encoder: nn.Module,
            aux: nn.Module,
            lam: float = 0.1,
            label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.encoder = encoder
        self.aux = aux
        self.lam = lam
        self.label_smoothing = label_smoothing
        if isinstance(aux, DINOAux):
            aux.init_teacher(encoder)
        self.find_unused_parameters = hasattr(encoder, "mask_token")  # DDP: no masked pass uses it here

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """views: V of [B, C, H, W], labels [B] -> (lam * CE + (1 - lam) * aux, {"cls", "aux"} detached)."""
        features = [pooled_features(self.encoder, v) for v in views]  # V of [B, D]
        logits = classifier(self.encoder)(features[0])  # [B, num_classes]
        cls = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        aux = self.aux(features, views)
        total = self.lam * cls + (1.0 - self.lam) * aux
        return total, {"cls": cls.detach(), "aux": aux.detach()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: x [B, C, H, W] -> logits [B, num_classes]; the auxiliary task is never used."""
        return self.encoder(x)

    # ----------------------------------------------------------------------- training contract

    def training_step(self, batch: tuple) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``([view1, view2], y)`` -> (joint loss, ``cls`` / ``rec`` parts; ``rec`` is the auxiliary loss)."""
        loss, parts = self(batch[0], batch[1])
        return loss, {"cls": parts["cls"], "rec": parts["aux"]}

    def eval_step(self, batch: tuple) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """``(x, y)`` single view -> classification loss only (the auxiliary task needs two views) and logits."""
        x, y = batch[0], batch[1]
        logits = self.predict(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        return loss, {"cls": loss}, logits

    @torch.no_grad()
    def after_update(self, progress: float) -> None:
        """DINO teacher EMA step, momentum raised from ``ema`` to 1 on a cosine over training (SimCLR: none)."""
        if isinstance(self.aux, DINOAux):
            momentum = 1.0 - (1.0 - self.aux.ema) * 0.5 * (1.0 + math.cos(math.pi * progress))
            self.aux.update_teacher(self.encoder, momentum)

    def after_weights_loaded(self) -> None:
        """DINO: restart the teacher as a copy of the encoder (e.g. after ``train.init_from``)."""
        if isinstance(self.aux, DINOAux):
            self.aux.init_teacher(self.encoder)
            self.aux.teacher_head.load_state_dict(self.aux.head.state_dict())

    def describe(self) -> str:
        return f"aux={type(self.aux).__name__.removesuffix('Aux').lower()}"
