#!/usr/bin/env python
"""Export the inference encoder + head: ``python tools/export.py --checkpoint CKPT --out model.onnx``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.export import export_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(export_main())
