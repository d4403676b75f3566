"""Building the slim model, with pruned channels physically removed."""
