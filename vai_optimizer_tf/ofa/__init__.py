"""Once-for-all: an elastic-width supernet, then subnets at any FLOPs target.

Modules, one concept each:

* `ofa_pruner.py`: `OFAPruner`, the public entry point.
* `channel_reorder.py`: each group's channels sorted by importance.
* `space_builder.py`: which groups and kernels are elastic; layer configs.
* `config_space.py`: `ConfigSpace`, genes and their sampling.
* `subnet_config.py`: `SubnetConfig` and `OFASubnet` values.
* `config_flops.py`: analytic FLOPs of configurations (widths and kernels).
* `tf_keras_elastic.py`: the elastic tf_keras layers.
* `tf_keras_supernet.py`: `OFASupernet`, its sandwich-rule `train_step`.
* `ofa_arguments.py`: argument checks of the pruner.
* `config_scorer.py`, `config_store.py`, `evolutionary_search.py`,
  `search_report.py`: the search, its cache and its reports.
* `static_subnet.py`: a configuration as a plain slim model.
"""

from vai_optimizer_tf.ofa.ofa_pruner import OFAPruner
from vai_optimizer_tf.ofa.subnet_config import OFASubnet, SubnetConfig
from vai_optimizer_tf.ofa.tf_keras_supernet import OFASupernet

__all__ = ["OFAPruner", "OFASubnet", "OFASupernet", "SubnetConfig"]
