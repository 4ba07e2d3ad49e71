import math

import pytest
import torch

from deepfake_ssat.models import create_model
from deepfake_ssat.models.aux_tasks import DINOAux, SimCLRAux, SSATMultiView, pooled_features


def _views(n: int = 6, count: int = 2, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, 32, 32, generator=gen) for _ in range(count)]


def _dino(**kwargs) -> DINOAux:
    return DINOAux(64, out_dim=32, hidden_dim=32, bottleneck_dim=16, **kwargs)


def _model(aux: torch.nn.Module, lam: float = 0.1) -> SSATMultiView:
    torch.manual_seed(0)
    return SSATMultiView(create_model("vit_test", num_classes=10), aux, lam=lam)


def test_nt_xent_matches_a_hand_computation():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 5, generator=gen), torch.randn(3, 5, generator=gen)
    tau = 0.1
    z = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    n2 = len(z)
    expected = 0.0
    for i in range(n2):
        positive = (i + n2 // 2) % n2
        numerator = math.exp(float(z[i] @ z[positive]) / tau)
        denominator = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        expected -= math.log(numerator / denominator)
    expected /= n2
    got = SimCLRAux(5, temperature=tau).loss(z1, z2)
    assert abs(got.item() - expected) < 1e-5


def test_simclr_projects_two_views_and_refuses_three():
    aux = SimCLRAux(64, proj_dim=16, hidden_dim=32)
    feats = [torch.randn(4, 64) for _ in range(2)]
    assert aux.head(feats[0]).shape == (4, 16)
    assert aux(feats, []).ndim == 0
    with pytest.raises(ValueError, match="exactly 2 views"):
        aux(feats + feats[:1], [])


@pytest.mark.parametrize("make_aux", [lambda: SimCLRAux(64, proj_dim=16, hidden_dim=32), _dino],
                         ids=["simclr", "dino"])
def test_one_training_step_puts_gradients_where_they_belong(make_aux):
    model = _model(make_aux()).train()
    views, labels = _views(), torch.arange(6) % 10
    loss, parts = model(views, labels)
    assert set(parts) == {"cls", "aux"}
    torch.testing.assert_close(loss.detach(), 0.1 * parts["cls"] + 0.9 * parts["aux"])
    loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert [n for n, p in trainable.items() if p.grad is None or p.grad.abs().sum() == 0] == []
    assert any(n.startswith("encoder.blocks") for n in trainable) and any(n.startswith("aux.head") for n in trainable)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(n.startswith(("aux.teacher", "aux.head.last.parametrizations.weight.original0")) for n in frozen)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    optimizer.step()
    model.after_update(0.0)
    assert model.predict(views[0]).shape == (6, 10)


def test_dino_teacher_is_a_frozen_copy_without_classifier_that_stays_in_eval_mode():
    model = _model(_dino())
    teacher = model.aux.teacher_encoder
    assert all(not p.requires_grad for p in model.aux.teacher_encoder.parameters())
    assert all(not p.requires_grad for p in model.aux.teacher_head.parameters())
    assert isinstance(teacher.head, torch.nn.Identity)
    student = dict(model.encoder.named_parameters())
    assert all(torch.equal(p, student[n]) for n, p in teacher.named_parameters())
    model.train()
    assert model.encoder.training and not teacher.training and not model.aux.teacher_head.training
    loss, _ = model(_views(), torch.arange(6) % 10)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in model.aux.teacher_head.parameters())


def test_dino_ema_update_is_exact():
    model = _model(_dino())
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    aux, m = model.aux, 0.9
    before = {n: p.clone() for n, p in aux.named_parameters() if n.startswith("teacher")}
    student = {f"teacher_encoder.{n}": p.clone() for n, p in model.encoder.named_parameters()}
    student |= {f"teacher_head.{n}": p.clone() for n, p in aux.head.named_parameters()}
    aux.update_teacher(model.encoder, momentum=m)
    for n, p in aux.named_parameters():
        if n.startswith("teacher"):
            torch.testing.assert_close(p, m * before[n] + (1 - m) * student[n], rtol=1e-6, atol=1e-7)
    # the trainer's hook: momentum ema at the start, 1 (teacher frozen) at the end of training
    now = {n: p.clone() for n, p in aux.named_parameters() if n.startswith("teacher")}
    model.after_update(1.0)
    assert all(torch.equal(p, now[n]) for n, p in aux.named_parameters() if n.startswith("teacher"))
    model.after_update(0.0)
    for n, p in aux.named_parameters():
        if n.startswith("teacher"):
            torch.testing.assert_close(p, aux.ema * now[n] + (1 - aux.ema) * student[n], rtol=1e-6, atol=1e-6)


def test_dino_center_is_an_ema_of_teacher_outputs():
    aux = _dino(center_momentum=0.8)
    model = _model(aux).train()
    views = _views()
    for step in range(2):
        center = aux.center.clone()
        teacher = torch.cat(aux.teacher_logits(views))  # [2B, K]
        model(views, torch.arange(6) % 10)
        torch.testing.assert_close(aux.center, 0.8 * center + 0.2 * teacher.mean(dim=0, keepdim=True))
    model.eval()
    center = aux.center.clone()
    aux([pooled_features(model.encoder, v) for v in views], views)
    assert torch.equal(aux.center, center)


def test_dino_multi_crop_teacher_sees_global_views_only():
    aux = _dino()
    model = _model(aux).train()
    views = _views(count=4)
    assert len(aux.teacher_logits(views)) == 2
    loss, parts = model(views, torch.arange(6) % 10)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="at least 2 views"):
        model(views[:1], torch.arange(6) % 10)


def test_dino_loss_is_finite_and_decreases_over_a_few_steps():
    model = _model(_dino(), lam=0.0).train()
    views, labels = _views(n=8), torch.arange(8) % 10
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(10):
        loss, parts = model(views, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.after_update(0.0)
        losses.append(parts["aux"].item())
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-3:]) < losses[0]
