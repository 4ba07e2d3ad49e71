#!/usr/bin/env python
"""Limited-data study: ``python tools/limited_data.py --recipe cifar10_vit_tiny_cpu --fractions 0.1 --seeds 0,1,2
--opts data.root=DIR`` (scratch vs SSAT, mean ± std); see deepfake_ssat/commands/limited_data.py."""
from deepfake_ssat.commands import limited_data

if __name__ == "__main__":
    limited_data()
