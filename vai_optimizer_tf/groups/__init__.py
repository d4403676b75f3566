"""Channel groups: which channels must shrink together."""
