"""`ElasticLayerSet`: one Keras flavour's elastic layer classes, and what to do with them.

Each flavour's elastic module (`tf_keras_elastic.py`, `keras3_elastic.py`)
defines its layer classes and builds one `ElasticLayerSet` from two tables;
everything else (which class replaces which, which weight is masked, the
static class of an elastic one, finding and setting the elastic layers of a
model) is derived here, once for both flavours.
"""

from vai_optimizer_tf.ofa.elastic_mixin import ElasticMixin


class ElasticLayerSet:
    """The elastic classes of one flavour.

    Args:
      keras: The flavour's Keras module (`tf_keras`, or Keras 3's `keras`).
      elastic_classes: The elastic classes, each `ElasticMixin` followed by
        the exact Keras layer class it replaces. Subclasses of those (a
        user's Conv2D with its own `call`) get no elastic class: their
        computation is unknown.
    """

    def __init__(self, keras, elastic_classes):
        self.keras = keras
        self.elastic_classes = {cls.__bases__[-1]: cls for cls in elastic_classes}
        self.static_classes = {elastic.__name__: base
                               for base, elastic in self.elastic_classes.items()}

    def elastic_class(self, layer_class):
        """The elastic subclass replacing `layer_class`, or None if it has none."""
        return self.elastic_classes.get(layer_class)

    def masked_weight(self, layer_class):
        """The weight whose input channels the elastic version of `layer_class` masks, or None."""
        elastic = self.elastic_classes.get(layer_class)
        return elastic.masked_weight_name if elastic is not None else None

    def _leaf_layers(self, model):
        """Every layer of `model` that is no model, nested models opened, each once."""
        seen, out = set(), []

        def walk(m):
            for layer in m.layers:
                if isinstance(layer, self.keras.Model):
                    walk(layer)
                elif id(layer) not in seen:
                    seen.add(id(layer))
                    out.append(layer)
        walk(model)
        return out

    def elastic_layers(self, model):
        """Every elastic layer of `model`, nested models included, each once."""
        return [layer for layer in self._leaf_layers(model) if isinstance(layer, ElasticMixin)]

    def set_active(self, model, widths, kernels):
        """Sets every elastic layer of `model` to global width and kernel-size vectors."""
        for layer in self.elastic_layers(model):
            layer.set_active(widths, kernels)

    def batch_norm_statistics(self, model):
        """The moving mean and variance of every BatchNormalization layer of `model`."""
        out = []
        for layer in self._leaf_layers(model):
            if isinstance(layer, self.keras.layers.BatchNormalization):
                out.extend([layer.moving_mean, layer.moving_variance])
        return out
