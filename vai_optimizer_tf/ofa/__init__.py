"""Once-for-all: an elastic-width supernet, then subnets at any FLOPs target.

Works on tf_keras and Keras 3 models alike: the flavour's classes are picked
through the model's adapter (`ofa_flavours.py`).

Modules, one concept each:

* `ofa_pruner.py`: `OFAPruner`, the public entry point.
* `channel_reorder.py`: each group's channels sorted by importance.
* `space_builder.py`: which groups and kernels are elastic; layer configs.
* `config_space.py`: `ConfigSpace`, genes and their sampling.
* `subnet_config.py`: `SubnetConfig` and `OFASubnet` values.
* `config_flops.py`: analytic FLOPs of configurations (widths and kernels).
* `elastic_mixin.py`: the masks of the elastic layers (both flavours).
* `elastic_layer_set.py`: one flavour's elastic classes and their lookups.
* `tf_keras_elastic.py`, `keras3_elastic.py`: the elastic layers of each flavour.
* `supernet_mixin.py`: the supernet's sandwich-rule `train_step`, sampling
  and settings (both flavours); `distillation.py`: its distillation losses.
* `tf_keras_supernet.py`, `keras3_supernet.py`: `OFASupernet` of each flavour.
* `ofa_flavours.py`: the supernet class of a flavour.
* `ofa_arguments.py`: argument checks of the pruner.
* `config_scorer.py`, `config_store.py`, `evolutionary_search.py`,
  `search_report.py`: the search, its cache and its reports.
* `static_subnet.py`: a configuration as a plain slim model.
"""

from vai_optimizer_tf.ofa.keras3_supernet import OFASupernet as Keras3OFASupernet
from vai_optimizer_tf.ofa.ofa_pruner import OFAPruner
from vai_optimizer_tf.ofa.subnet_config import OFASubnet, SubnetConfig
from vai_optimizer_tf.ofa.tf_keras_supernet import OFASupernet

__all__ = ["Keras3OFASupernet", "OFAPruner", "OFASubnet", "OFASupernet", "SubnetConfig"]
