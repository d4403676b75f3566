"""Small helpers shared across vai_optimizer_tf."""
