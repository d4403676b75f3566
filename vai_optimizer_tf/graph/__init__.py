"""Graph IR, the layer registry, and the adapters that read Keras models.

Modules:

* `ir.py`: the neutral graph (`Graph`, `Node`, `TensorInfo`) every adapter
  produces and everything else reads.
* `registry.py`: `LayerSpec`, `Role` and the registry keyed by layer class
  (looked up through the MRO).
* `layer_rules.py`, `op_rules.py`: flavour-neutral rules, which read only a
  `Node` (config dict, shapes, weights, call arguments).
* `graph_reader.py`: `GraphReader`, the walk over a Keras model's graph both
  flavours share, through small per-flavour hooks.
* `adapter.py`: `ModelAdapter`, the contract every adapter implements (what
  the rest of the library calls), with the rebuilding both flavours share.
* `tf_keras_rules.py`: maps each tf_keras layer class to its rule, one
  registry entry per class.
* `tf_keras_adapter.py`: reads tf_keras models into the IR and rebuilds them.
* `calibrating_batch_norm.py`: what the BatchNormalization layer of
  calibration copies (adaptive BN) does, for both flavours.
* `tf_keras_calibration.py`: that layer for tf_keras, and which noise layers
  to switch off.
* `keras3_rules.py`, `keras3_adapter.py`, `keras3_calibration.py`: the same
  three for Keras 3 models (`import keras`, `tf.keras` in TF 2.16+),
  `keras.ops` calls included.
* `adapters.py`: picks the adapter of a model by its Keras flavour.
* `layer_insertion.py`: inserts layers in front of others in a model config
  (`ModelAdapter.insert_before`), with `tf_keras_insertion.py` and
  `keras3_insertion.py` writing each flavour's calls.

Only the flavour modules touch Keras internals (`tf_keras.src` in the
tf_keras ones, `keras.src` in the Keras 3 ones); `tests/test_registry.py`
checks that no other module imports them. Both flavours register their
classes with the same rules, in the one registry.
"""
