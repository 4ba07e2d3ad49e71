"""Detection metrics (fake = 1 = positive class), video aggregation and a streaming accumulator.

Videos are keyed ``dataset/method/compression/video_id`` (``-`` for an absent field), so the same
``video_id`` under two methods stays two videos.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

KEY_FIELDS = ("dataset", "method", "compression", "video_id")
STRATEGIES = ("mean", "confident")


def _as_numpy(x: Any, dtype: type) -> np.ndarray:
    """A 1-D numpy array from a tensor, array or sequence."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype).reshape(-1)


def _check(labels: np.ndarray, probs: np.ndarray) -> None:
    if labels.shape != probs.shape:
        raise ValueError(f"labels ({labels.size}) and probs ({probs.size}) differ in length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not (np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()):
        raise ValueError("probs must be finite probabilities in [0, 1] (pass sigmoid/softmax outputs, not logits)")


def equal_error_rate(labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> float:
    """EER: the ROC point where FPR = FNR (= 1 - TPR).

    The ROC is taken as the polyline through all of ``roc_curve``'s points (no point dropped).
    ``g = FPR - FNR`` never decreases along it, so the first point with ``g >= 0`` and its predecessor
    bracket the crossing; the EER is FPR there, linearly interpolated along that segment (exact when
    ``g == 0`` at a point). Interpolating along the segment, not TPR as a function of FPR, also
    handles vertical segments.
    """
    fpr, tpr, _ = roc_curve(labels, probs, drop_intermediate=False)
    g = fpr - (1.0 - tpr)
    i = int(np.argmax(g >= 0))  # g ends at 1 (FPR = 1, FNR = 0), so a crossing exists
    if g[i] == 0 or i == 0:
        return float(fpr[i])
    s = -g[i - 1] / (g[i] - g[i - 1])
    return float(fpr[i - 1] + s * (fpr[i] - fpr[i - 1]))


LOG_LOSS_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] for the log-loss (as scikit-learn / DFDC)


def binary_metrics(labels: Any, probs: Any, threshold: float = 0.5) -> dict[str, float | int | None]:
    """ACC / per-class ACC / balanced ACC (%, ``prob >= threshold`` is fake), log-loss (nats), AUC, AP,
    EER (fractions) and counts.

    A class with no samples gives ``None`` for its accuracy; with one class only, AUC/AP/EER are ``None``.
    """
    y = _as_numpy(labels, np.int64)
    p = _as_numpy(probs, np.float64)
    _check(y, p)
    if y.size == 0:
        raise ValueError("binary_metrics: no samples")
    correct = (p >= threshold) == (y == 1)
    n_fake = int(y.sum())
    n_real = int(y.size - n_fake)
    both = n_real > 0 and n_fake > 0
    acc_real = 100.0 * float(correct[y == 0].mean()) if n_real else None
    acc_fake = 100.0 * float(correct[y == 1].mean()) if n_fake else None
    clipped = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return {
        "acc": 100.0 * float(correct.mean()),
        "acc_real": acc_real,
        "acc_fake": acc_fake,
        "balanced_acc": (acc_real + acc_fake) / 2 if both else None,
        "log_loss": float(-np.mean(np.where(y == 1, np.log(clipped), np.log1p(-clipped)))),
        "auc": float(roc_auc_score(y, p)) if both else None,
        "ap": float(average_precision_score(y, p)) if both else None,
        "eer": equal_error_rate(y, p) if both else None,
        "n": int(y.size),
        "n_real": n_real,
        "n_fake": n_fake,
    }


def confident_strategy(probs: Any, t: float = 0.8) -> float:
    """The DFDC 1st-place video score (selimsef/dfdc_deepfake_challenge ``kernel_utils.confident_strategy``).

    With ``n`` clip probabilities: if more than ``n / 2.5`` and more than 11 exceed ``t`` -> mean of those;
    elif more than 90 % are below 0.2 -> mean of those; else the mean of all. The comparisons are done in
    exact integer arithmetic (upstream: ``fakes > n // 2.5`` and ``count > 0.9 * n``, which is the same for
    integer counts); an empty input raises instead of upstream's NaN mean.
    """
    p = _as_numpy(probs, np.float64)
    n = p.size
    if n == 0:
        raise ValueError("confident_strategy: no probabilities")
    high = p > t
    n_high = int(high.sum())
    if 5 * n_high > 2 * n and n_high > 11:
        return float(p[high].mean())
    low = p < 0.2
    if 10 * int(low.sum()) > 9 * n:
        return float(p[low].mean())
    return float(p.mean())


def aggregate(probs: Any, strategy: str = "mean") -> float:
    """One video score from its clip/frame probabilities: ``"mean"`` or ``"confident"`` (DFDC winner)."""
    if strategy == "confident":
        return confident_strategy(probs)
    if strategy == "mean":
        p = _as_numpy(probs, np.float64)
        if p.size == 0:
            raise ValueError("aggregate: no probabilities")
        return float(p.mean())
    raise ValueError(f"unknown aggregation strategy {strategy!r}; expected one of {STRATEGIES}")


def split_key(key: str) -> dict[str, str]:
    """``dataset/method/compression/video_id`` -> its four fields (``video_id`` may itself contain ``/``)."""
    parts = key.split("/", 3)
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"video key {key!r} is not 'dataset/method/compression/video_id' ('-' for absent fields)")
    return dict(zip(KEY_FIELDS, parts))


class _Buffer:
    """A growing 1-D numpy array without Python objects per item; capacity grows by 25 % (amortised O(1)
    appends, at most 25 % slack: 1M clips stay under 12 MB)."""

    def __init__(self, dtype: type, capacity: int = 1024) -> None:
        self.data = np.empty(capacity, dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        end = self.size + values.size
        if end > self.data.size:
            grown = np.empty(max(end, self.data.size * 5 // 4), dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = values
        self.size = end

    @property
    def values(self) -> np.ndarray:
        return self.data[: self.size]


class StreamingMetrics:
    """Accumulates clip-level ``(video key, label, prob)`` batch by batch; metrics at clip and video level.

    Per clip only a key id (int32), a label (int8) and a prob (float32) are stored, in growing numpy
    buffers: memory is about 9 bytes per clip plus one entry per distinct video.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._keys: list[str] = []
        self._video_label = _Buffer(np.int8, 256)
        self._key_id = _Buffer(np.int32)
        self._label = _Buffer(np.int8)
        self._prob = _Buffer(np.float32)

    def __len__(self) -> int:
        return self._label.size

    @property
    def nbytes(self) -> int:
        """Bytes held by the numpy buffers (clip buffers + per-video labels)."""
        return sum(b.data.nbytes for b in (self._key_id, self._label, self._prob, self._video_label))

    def update(self, keys: Sequence[str], labels: Any, probs: Any) -> None:
        """Add one batch of clips; a video key seen with two labels raises ``ValueError`` naming it."""
        y = _as_numpy(labels, np.int64)
        p = _as_numpy(probs, np.float64)
        _check(y, p)
        if len(keys) != y.size:
            raise ValueError(f"{len(keys)} keys for {y.size} labels")
        first = len(self._keys)
        try:
            ids = np.fromiter((self._id(k) for k in keys), dtype=np.int32, count=y.size)
            n_new = len(self._keys) - first
            if n_new:
                new_labels = np.full(n_new, -1, dtype=np.int8)
                is_new = ids >= first
                new_labels[ids[is_new] - first] = y[is_new]  # one of each new video's labels; checked below
                self._video_label.extend(new_labels)
            bad = np.flatnonzero(self._video_label.values[ids] != y)
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"video {keys[i]!r} has conflicting labels (label {int(y[i])} vs another clip's)")
        except ValueError:  # bad key or label: leave the accumulator as before the batch
            for k in self._keys[first:]:
                del self._ids[k]
            del self._keys[first:]
            self._video_label.size = first
            raise
        self._key_id.extend(ids)
        self._label.extend(y.astype(np.int8))
        self._prob.extend(p.astype(np.float32))

    def _id(self, key: str) -> int:
        i = self._ids.get(key)
        if i is None:
            split_key(key)
            i = self._ids[key] = len(self._keys)
            self._keys.append(key)
        return i

    def _video_probs(self, strategy: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-video (score, clip count), indexed by key id."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown aggregation strategy {strategy!r}; expected one of {STRATEGIES}")
        ids = self._key_id.values
        counts = np.bincount(ids, minlength=len(self._keys))
        if strategy == "mean":
            sums = np.bincount(ids, weights=self._prob.values.astype(np.float64), minlength=len(self._keys))
            return sums / counts, counts
        order = np.argsort(ids, kind="stable")
        groups = np.split(self._prob.values[order], np.cumsum(counts)[:-1])
        return np.array([aggregate(g, strategy) for g in groups]), counts

    def videos(self, strategy: str = "mean") -> list[dict[str, Any]]:
        """Per-video rows: key, dataset, method, compression, video_id, label, prob, num_clips."""
        scores, counts = self._video_probs(strategy)
        labels = self._video_label.values
        return [
            {"key": k, **split_key(k), "label": int(labels[i]), "prob": float(scores[i]), "num_clips": int(counts[i])}
            for i, k in enumerate(self._keys)
        ]

    def compute(self, strategy: str = "mean", threshold: float = 0.5) -> dict[str, Any]:
        """``{"clip": m, "video": m, "per_method": {method: {"clip": m, "video": m}}}`` with ``m = binary_metrics``.

        ``method`` is the key's second field. A method whose samples are all fake (e.g. FF++ ``Deepfakes``)
        is scored against the real samples of the real-only methods (FF++ ``original``), the usual per-
        manipulation protocol, so its AUC exists; other methods are scored on their own samples.
        """
        if not self._keys:
            raise ValueError("StreamingMetrics.compute: no clips")
        scores, _ = self._video_probs(strategy)
        v_label = self._video_label.values
        c_id, c_label, c_prob = self._key_id.values, self._label.values, self._prob.values
        methods = [split_key(k)["method"] for k in self._keys]
        names = list(dict.fromkeys(methods))
        v_method = np.array([names.index(m) for m in methods], dtype=np.int32)
        has_real = np.bincount(v_method, weights=v_label == 0, minlength=len(names)) > 0
        has_fake = np.bincount(v_method, weights=v_label == 1, minlength=len(names)) > 0
        real_only = has_real & ~has_fake
        out: dict[str, Any] = {
            "clip": binary_metrics(c_label, c_prob, threshold),
            "video": binary_metrics(v_label, scores, threshold),
            "per_method": {},
        }
        for j, name in enumerate(names):
            v_sel = v_method == j
            if not has_real[j]:
                v_sel = v_sel | real_only[v_method]
            c_sel = v_sel[c_id]
            out["per_method"][name] = {
                "clip": binary_metrics(c_label[c_sel], c_prob[c_sel], threshold),
                "video": binary_metrics(v_label[v_sel], scores[v_sel], threshold),
            }
        return out
