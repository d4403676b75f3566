"""The `vai_p_tf2` command line (see docs/cli.md).

`vai_optimizer_tf.cli.main.main(argv)` runs one action and returns the exit
status; `python -m vai_optimizer_tf.cli` is the same as `vai_p_tf2`.
"""
