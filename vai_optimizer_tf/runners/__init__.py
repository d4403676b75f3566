"""Pruning runners: one module per method, on a shared `PruningRunner` base."""
