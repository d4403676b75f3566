"""Importance criteria and pruning specs."""
