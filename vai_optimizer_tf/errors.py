"""Exceptions raised by vai_optimizer_tf.

Every error names what is wrong and how to fix it, so that a user reading the
last line of a traceback knows what to do next.
"""


class VaiOptimizerError(Exception):
    """Base class of every error raised by vai_optimizer_tf."""


class UnsupportedModelError(VaiOptimizerError, TypeError):
    """The model is of a kind the graph walker cannot read.

    Raised for objects that are no Keras model, subclassed models, unbuilt
    Sequential models, and Keras 3 on a backend other than TensorFlow.
    """


class SpecMismatchError(VaiOptimizerError, ValueError):
    """A pruning spec was made for a different model."""


class SpecFormatError(VaiOptimizerError, ValueError):
    """A pruning spec file is not valid JSON of the expected shape."""


class AnalysisError(VaiOptimizerError, RuntimeError):
    """Sensitivity analysis stopped: `eval_fn` raised or returned a bad value.

    Finished steps are kept in the workspace; running `ana` again resumes.
    """


class AnalysisCacheError(VaiOptimizerError, ValueError):
    """A sensitivity-analysis cache file is corrupted or belongs elsewhere."""
