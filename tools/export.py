#!/usr/bin/env python
"""Export the inference encoder + head: ``python tools/export.py --checkpoint CKPT --out model.onnx``."""
from deepfake_ssat.commands import export

if __name__ == "__main__":
    export()
