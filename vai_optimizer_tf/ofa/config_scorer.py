"""`ConfigScorer`: scores supernet configurations with adaptive BN on one calibration copy."""

from vai_optimizer_tf.search.candidate_scorer import AdaptiveBNScorer


class ConfigScorer(AdaptiveBNScorer):
    """Sets a calibration copy of the supernet to each configuration, then re-estimates BN.

    The copy keeps the supernet's elastic layers and their variables, so a
    configuration is a handful of variable assignments: no weight is copied.

    Args:
      adapter: The supernet's adapter.
      space: The supernet's `ConfigSpace`.
      set_active: `fn(model, widths, kernels)` setting the elastic layers of
        a model (from the Keras flavour's elastic module).
      make_calibration: `fn(model, calibrating) -> BatchNormCalibration`.
      eval_fn: `fn(model) -> float`.
    """

    def __init__(self, adapter, space, set_active, make_calibration, eval_fn):
        super().__init__(adapter, make_calibration, eval_fn)
        self.space = space
        self.set_active = set_active

    def prepare(self, genes):
        """Sets the copy's elastic layers to the configuration of a gene vector."""
        widths, kernels = self.space.vectors(self.space.decode(genes))
        self.set_active(self.model, widths, kernels)
