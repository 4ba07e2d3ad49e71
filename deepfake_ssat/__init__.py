"""deepfake_ssat: ViTs trained jointly for classification and masked reconstruction (SSAT)."""
__version__ = "0.1.0"


def __getattr__(name: str):
    """``deepfake_ssat.Detector`` is imported on first use, so that ``import deepfake_ssat`` stays cheap."""
    if name == "Detector":
        from .inference import Detector

        return Detector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
