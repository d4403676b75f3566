"""Graph IR, the layer registry, and the adapters that read Keras models."""
