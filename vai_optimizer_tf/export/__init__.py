"""Deployment formats for the slim model (see docs/export.md).

`.keras`/`.h5`, a SavedModel for TF Serving, a frozen graph for TF1-style
quantizers, TFLite (float, full-integer int8, QAT) and the hand-off to TFMOT
quantization-aware training.
"""

from vai_optimizer_tf.export.accuracy import compare, top1_accuracy
from vai_optimizer_tf.export.formats import FORMATS, check_formats, export_model, output_paths
from vai_optimizer_tf.export.frozen_graph import FrozenGraph, export_frozen_graph, freeze
from vai_optimizer_tf.export.keras_format import save_keras
from vai_optimizer_tf.export.qat import prepare_qat_model
from vai_optimizer_tf.export.saved_model import SERVING_KEY, export_saved_model
from vai_optimizer_tf.export.signature import ModelSignature, TensorInfo
from vai_optimizer_tf.export.tflite import (QUANTIZATIONS, TFLiteExport, convert_to_tflite,
                                            export_tflite, representative_dataset)
from vai_optimizer_tf.export.tflite_model import TFLiteModel

__all__ = [
    "FORMATS", "FrozenGraph", "ModelSignature", "QUANTIZATIONS", "SERVING_KEY", "TFLiteExport",
    "TFLiteModel", "TensorInfo", "check_formats", "compare", "convert_to_tflite",
    "export_frozen_graph", "export_model", "export_saved_model", "export_tflite", "freeze",
    "output_paths", "prepare_qat_model", "representative_dataset", "save_keras", "top1_accuracy",
]
