"""Reports over whole runs, built on the engine: the multi-run studies (:mod:`.runs`: the lambda sweep of the
paper's Fig. 3, the digits fidelity study) and the training-cost report of Table 3 (:mod:`.cost`: GFLOPs per
image, train time, kg CO2-eq)."""
from .runs import DIGITS_VARIANTS, GOAL_POINTS, digits_study, format_study, format_sweep, sweep_lambda

__all__ = ["DIGITS_VARIANTS", "GOAL_POINTS", "digits_study", "format_study", "format_sweep", "sweep_lambda"]
