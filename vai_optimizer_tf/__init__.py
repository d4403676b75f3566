"""vai_optimizer_tf: channel pruning for Keras / TensorFlow 2.

Removes whole channels from trained Keras models, tf_keras (Keras 2) and
Keras 3 (`import keras`, or `tf.keras` in TensorFlow 2.16+) alike, so the
pruned model is really smaller and faster on any hardware.

Example:

```python
import tf_keras
import vai_optimizer_tf as vot

model = tf_keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
print(vot.stat(model).flops)
runner = vot.IterativePruningRunner(model)
spec = runner.uniform_spec(0.5)
slim = runner.get_slim_model(spec)
```
"""

# First, before anything imports TensorFlow: in `vai_p_tf2` only, hide its native log lines.
from vai_optimizer_tf.cli import tf_logging as _tf_logging  # isort: skip

_tf_logging.quiet_tensorflow_for_cli()

from vai_optimizer_tf import callbacks  # noqa: E402  pylint: disable=wrong-import-position
from vai_optimizer_tf.errors import (AnalysisCacheError, AnalysisError, SpecFormatError,
                                     SpecMismatchError,
                                     UnsupportedModelError, VaiOptimizerError)
from vai_optimizer_tf.graph.registry import Axis, LayerSpec, Role, register_layer
from vai_optimizer_tf.groups.channel_group import ChannelGroup
from vai_optimizer_tf.runners.iterative_runner import IterativePruningRunner
from vai_optimizer_tf.runners.one_step_runner import OneStepPruningRunner
from vai_optimizer_tf.masks.channel_mask import ChannelMask
# Registers the Keras 3 ChannelMask, so sparse Keras 3 files load after `import vai_optimizer_tf`.
from vai_optimizer_tf.masks import keras3_channel_mask  # noqa: F401  isort: skip
from vai_optimizer_tf.ofa import (Keras3OFASupernet, OFAPruner, OFASubnet, OFASupernet,
                                  SubnetConfig)
from vai_optimizer_tf.planning.importance import GroupWeights
from vai_optimizer_tf.planning.spec import GroupSpec, PruningSpec
from vai_optimizer_tf.search.adaptive_bn import adaptive_bn
from vai_optimizer_tf import sparsity  # noqa: E402
from vai_optimizer_tf.sparsity import SparsePruner, SparsityReport, sparsity_report
from vai_optimizer_tf.stats.model_stats import LayerStats, ModelStats, stat

__version__ = "0.1.0"

__all__ = [
    "adaptive_bn", "callbacks", "AnalysisCacheError", "AnalysisError", "Axis", "ChannelGroup",
    "ChannelMask", "GroupSpec", "GroupWeights", "IterativePruningRunner", "Keras3OFASupernet",
    "LayerSpec",
    "LayerStats", "ModelStats", "OFAPruner", "OFASubnet", "OFASupernet", "OneStepPruningRunner",
    "PruningSpec", "Role", "SpecFormatError", "SpecMismatchError", "SparsePruner", "SparsityReport",
    "SubnetConfig", "UnsupportedModelError", "VaiOptimizerError", "register_layer", "sparsity",
    "sparsity_report", "stat",
]
