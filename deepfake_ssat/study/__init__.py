"""Reports over whole runs, built on the engine: the multi-run studies (:mod:`.runs`: the lambda sweep of the
paper's Fig. 3, the limited-data study of scratch vs SSAT over training-set fractions and seeds) and the
training-cost report of Table 3 (:mod:`.cost`: GFLOPs per image, train time, kg CO2-eq)."""
from .runs import (GOAL_FRACTION, GOAL_POINTS, VARIANTS, format_study, format_sweep, limited_data_study,
                   recipe_configs, sweep_lambda)

__all__ = ["GOAL_FRACTION", "GOAL_POINTS", "VARIANTS", "format_study", "format_sweep", "limited_data_study",
           "recipe_configs", "sweep_lambda"]
