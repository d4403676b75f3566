"""Keras callbacks for channel pruning and N:M sparsity during `fit`.

Masks hold without any callback; these drive schedules, log and export.
"""

from vai_optimizer_tf.callbacks.gradual_channel_pruning import GradualChannelPruning
from vai_optimizer_tf.callbacks.gradual_sparsity import GradualSparsity
from vai_optimizer_tf.callbacks.pruning_summaries import ChannelPruningSummaries
from vai_optimizer_tf.callbacks.slim_model_export import SlimModelExport

__all__ = ["ChannelPruningSummaries", "GradualChannelPruning", "GradualSparsity",
           "SlimModelExport"]
