"""Sensitivity analysis: how much the metric drops when each group is pruned."""
