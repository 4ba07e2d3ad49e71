"""Video inference: a trained face-clip classifier applied to whole video files.

:mod:`.detector` turns a video into a fake probability (``Detector.from_checkpoint(path).predict_video``);
:mod:`.annotate` draws what it looked at; :mod:`.export` writes the model for other runtimes (safetensors, ONNX,
TorchScript, ``torch.export``). The command line is :mod:`deepfake_ssat.commands.predict`.
"""
from .annotate import write_strip
from .detector import Detector, NonFiniteOutput, expand_inputs, model_geometry

__all__ = ["Detector", "NonFiniteOutput", "expand_inputs", "model_geometry", "write_strip"]
