"""deepfake_ssat: ViTs trained jointly for classification and masked reconstruction (SSAT)."""
__version__ = "0.1.0"
