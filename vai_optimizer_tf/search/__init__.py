"""Subnet search: adaptive BN, candidate sampling and scoring (one-step pruning, OFA)."""
