"""`python -m vai_optimizer_tf.cli` runs `vai_p_tf2`."""

from vai_optimizer_tf.cli.main import run

run()
