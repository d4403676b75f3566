"""Graph IR, the layer registry, and the adapters that read Keras models.

Modules:

* `ir.py`: the neutral graph (`Graph`, `Node`, `TensorInfo`) every adapter
  produces and everything else reads.
* `registry.py`: `LayerSpec`, `Role` and the registry keyed by layer class
  (looked up through the MRO).
* `layer_rules.py`, `op_rules.py`: flavour-neutral rules, which read only a
  `Node` (config dict, shapes, weights, call arguments).
* `tf_keras_rules.py`: maps each tf_keras layer class to its rule, one
  registry entry per class.
* `tf_keras_adapter.py`: reads tf_keras models into the IR and rebuilds them.
* `tf_keras_calibration.py`: the BatchNormalization layer of calibration
  copies (adaptive BN) and which noise layers to switch off.
* `adapters.py`: picks the adapter of a model by its Keras flavour.

Only `tf_keras_adapter.py` and `tf_keras_rules.py` touch tf_keras internals
(`tf_keras.src`: private base classes, op layers, functional-model helpers);
`tests/test_registry.py` checks that no other module imports them. An
adapter for another Keras flavour adds its own pair of modules and registers
its classes with the same rules.
"""
