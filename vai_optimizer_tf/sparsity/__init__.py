"""Fine-grained N:M block sparsity: `SparsePruner`, its masks, report and export."""

from vai_optimizer_tf.sparsity.block_mask_base import restore_masks
from vai_optimizer_tf.sparsity.block_pattern import BlockPattern, check_sparsity_config
from vai_optimizer_tf.sparsity.sparse_export import (SparseExport, SparseTFLite,
                                                     export_sparse_model, plain_model)
from vai_optimizer_tf.sparsity.sparse_pruner import SparsePruner
from vai_optimizer_tf.sparsity.sparse_targets import Exclusion, SparseTarget
from vai_optimizer_tf.sparsity.sparsity_report import (LayerSparsity, SparsityReport,
                                                       sparsity_report)
from vai_optimizer_tf.sparsity.tf_keras_activation_sparsity import ActivationSparsity
from vai_optimizer_tf.sparsity.tf_keras_block_mask import BlockSparseMask
# Registers the Keras 3 twins, so sparse Keras 3 files load after `import vai_optimizer_tf`.
from vai_optimizer_tf.sparsity import flavour_classes  # noqa: F401  isort: skip
from vai_optimizer_tf.sparsity.tflite_pattern_check import KernelCheck, PatternCheck

__all__ = [
    "ActivationSparsity", "BlockPattern", "BlockSparseMask", "Exclusion", "KernelCheck",
    "LayerSparsity", "PatternCheck", "SparseExport", "SparsePruner", "SparseTFLite",
    "SparseTarget", "SparsityReport", "check_sparsity_config", "export_sparse_model",
    "plain_model", "restore_masks", "sparsity_report",
]
