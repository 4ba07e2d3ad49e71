"""Face extraction: decode (decord or PyAV, :mod:`.video`) -> detect (MTCNN, downscaled, batched) -> track -> square crops.

``dfssat-extract-faces`` is the CLI (:mod:`deepfake_ssat.commands.extract_faces`).
"""
from .inputs import InputError, VideoItem, discover, shard
from .detect import FaceDetector, FrameFaces, box_iou, link_tracks, square_crop_box
from .extract import ExtractionParams, extract_video, run_batch, write_index
from .sampling import SamplingPolicy

__all__ = [
    "ExtractionParams", "FaceDetector", "FrameFaces", "InputError", "SamplingPolicy", "VideoItem",
    "box_iou", "discover", "extract_video", "link_tracks", "run_batch", "shard", "square_crop_box",
    "write_index",
]
