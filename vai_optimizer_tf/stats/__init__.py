"""FLOPs and parameter counts."""
