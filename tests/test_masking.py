import pytest
import torch

from deepfake_ssat.models import gather_tokens, random_masking, tube_masking


@pytest.mark.parametrize("ratio", [0.75, 0.95])
def test_random_masking_counts_and_restore(ratio):
    batch, length = 5, 64
    ids_keep, mask, ids_restore = random_masking(batch, length, ratio)
    keep = int(length * (1 - ratio))
    assert ids_keep.shape == (batch, keep)
    assert mask.shape == (batch, length)
    assert torch.equal(mask.sum(1), torch.full((batch,), float(length - keep)))
    # kept tokens are exactly the unmasked ones
    for b in range(batch):
        assert set(ids_keep[b].tolist()) == set(torch.nonzero(mask[b] == 0).flatten().tolist())
    # ids_restore inverts the shuffle: visible + placeholders gathered back = original order
    x = torch.arange(length).float().view(1, length, 1).expand(batch, -1, 3)  # token i holds value i
    visible = gather_tokens(x, ids_keep)
    dropped = torch.full((batch, length - keep, 3), -1.0)
    restored = gather_tokens(torch.cat([visible, dropped], 1), ids_restore)
    expected = torch.where(mask.unsqueeze(-1).bool(), torch.tensor(-1.0), x)
    assert torch.equal(restored, expected)


def test_random_masking_differs_per_sample():
    ids_keep, _, _ = random_masking(8, 64, 0.75)
    assert len({tuple(r.tolist()) for r in ids_keep}) > 1


@pytest.mark.parametrize("ratio", [0.75, 0.95])
def test_tube_mask_same_over_time(ratio):
    t, h, w = 4, 7, 7
    batch = 3
    ids_keep, mask, ids_restore = tube_masking(batch, (t, h, w), ratio)
    per_slice = mask.view(batch, t, h * w)
    for ti in range(1, t):
        assert torch.equal(per_slice[:, 0], per_slice[:, ti])
    assert torch.equal(per_slice.sum(-1), torch.full((batch, t), float(int(h * w * ratio))))
    assert ids_keep.shape == (batch, t * (h * w - int(h * w * ratio)))
    # restore round trip
    length = t * h * w
    x = torch.arange(length).float().view(1, length, 1).expand(batch, -1, 2)
    pad = torch.full((batch, length - ids_keep.shape[1], 2), -1.0)
    restored = gather_tokens(torch.cat([gather_tokens(x, ids_keep), pad], 1), ids_restore)
    assert torch.equal(restored[mask == 0], x[mask == 0])
    assert (restored[mask == 1] == -1).all()


def test_masking_on_requested_device_and_bad_ratio():
    _, mask, _ = random_masking(2, 16, 0.5, device="cpu")
    assert mask.device.type == "cpu"
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(2, 16, 1.0)
    with pytest.raises(ValueError, match="no visible"):
        random_masking(2, 16, 0.99)
