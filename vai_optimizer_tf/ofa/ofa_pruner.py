"""`OFAPruner`: once-for-all. One elastic supernet, then subnets at any FLOPs target.

Vitis AI's third pruning method (`OFAPruner` in `pytorch_nndct`), after
Once-for-All (Cai et al., ICLR 2020) and BigNAS (Yu et al., 2020):

1. `ofa_model` reorders every channel group by importance and builds a
   supernet whose widths are prefixes of the groups (and whose large kernels
   may run their centre);
2. the supernet trains with `fit`: the sandwich rule with distillation runs
   inside its `train_step`;
3. `search` finds, for each FLOPs target, the best configuration in a band
   around it, by evolution, scoring candidates with adaptive BN and
   `eval_fn` (resumable, shared by processes);
4. `get_static_subnet` extracts a configuration as a plain slim model.
"""

import logging
import numbers
import os

import numpy as np
from tf_keras.utils import Progbar

from vai_optimizer_tf.graph import adapters
from vai_optimizer_tf.graph.registry import Role
from vai_optimizer_tf.groups.dependency_graph import DependencyGraph
from vai_optimizer_tf.ofa import ofa_arguments, ofa_flavours, search_report
from vai_optimizer_tf.ofa.channel_reorder import importance_order, reordered_weights
from vai_optimizer_tf.ofa.config_flops import ConfigFlops
from vai_optimizer_tf.ofa.config_scorer import ClaimedScoring, ConfigScorer
from vai_optimizer_tf.ofa.config_store import ConfigStore
from vai_optimizer_tf.ofa.distillation import DISTILLATION_LOSSES
from vai_optimizer_tf.ofa.evolutionary_search import EvolutionarySearch
from vai_optimizer_tf.ofa.space_builder import SEARCH_SPACES, SpaceBuilder
from vai_optimizer_tf.ofa.static_subnet import StaticSubnetBuilder, base_weights
from vai_optimizer_tf.ofa.subnet_config import OFASubnet
from vai_optimizer_tf.ofa.supernet_mixin import SupernetMixin
from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.runners.base_runner import PruningRunner
from vai_optimizer_tf.search.adaptive_bn import PreparedBatches, adaptive_bn, make_calibration
from vai_optimizer_tf.search.calibration_data import batches_digest, calibration_batches
from vai_optimizer_tf.stats import formulas
from vai_optimizer_tf.utils import digests
from vai_optimizer_tf.stats.model_stats import check_flops_known
from vai_optimizer_tf.utils import validation

logger = logging.getLogger("vai_optimizer_tf")


def _function_name(fn):
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


class OFAPruner(PruningRunner):
    """Once-for-all: an elastic supernet trained once, then subnets at any FLOPs target.

    `ofa_model` builds the supernet (a model of the same Keras flavour as
    `model`, to `compile` and `fit`), `search` finds the best subnet for each FLOPs target with an
    evolutionary search scored by adaptive BN and `eval_fn`, and
    `get_static_subnet` returns a subnet as a plain slim model. The model
    passed in is never modified. Being a `PruningRunner`, it also has
    `groups`, `describe_groups()`, `uniform_spec`, `get_slim_model` and
    `stat`.

    Args:
      model: A tf_keras or Keras 3 Sequential or Functional model, trained
        (it is the supernet's starting point and its distillation teacher).
        Keras 3 models run on the TensorFlow backend.
      input_signature: Optional `tf.TensorSpec` (or list) for models whose
        input shape is not fully defined; only used to count FLOPs.
        Defaults to the model's own input shapes.
      workspace: Folder for the search results and reports. Defaults to
        `".vai"`.

    Example:

    ```python
    import numpy as np
    import tf_keras as keras
    import vai_optimizer_tf as vot

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    x_train = np.random.rand(64, 8, 8, 3).astype("float32")
    y_train = np.random.randint(0, 4, 64)

    ofa = vot.OFAPruner(model, workspace="ws")
    supernet = ofa.ofa_model(expand_ratios=(0.25, 0.5, 0.75, 1.0), channel_divisible=4)
    supernet.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    supernet.fit(x_train, y_train, epochs=1, verbose=0)

    def eval_fn(m):
        return float(np.mean(np.argmax(m(x_train[:32]), -1) == y_train[:32]))

    front = ofa.search(eval_fn, x_train[32:], flops_targets=(0.5,), population=4,
                       generations=2, calibration_steps=1, verbose=0)
    subnet = ofa.get_static_subnet(front[0.5])   # a plain slim tf_keras model
    ```
    """

    def __init__(self, model, input_signature=None, workspace=".vai"):
        super().__init__(model, input_signature, workspace)
        self._input_signature = input_signature
        self.supernet = None
        self._last_search = None
        self._supernet_class = ofa_flavours.supernet_class(self._adapter.flavour)

    @property
    def search_folder(self):
        return os.path.join(self.workspace, "ofa")

    # Supernet -----------------------------------------------------------------------------

    def ofa_model(self, expand_ratios=(0.5, 0.75, 1.0), kernel_sizes=None, channel_divisible=8,
                  excludes=None, criterion="l1", search_space="auto", num_random_subnets=2,
                  distillation_weight=1.0, inplace_distillation_weight=1.0,
                  distillation_loss="auto"):
        """Builds the elastic supernet: groups reordered by importance, elastic layers.

        Call it inside `strategy.scope()` to train under a `tf.distribute`
        strategy, and after `keras.mixed_precision.set_global_policy` for
        mixed precision (the supernet's layers take the original model's
        dtype policies).

        Args:
          expand_ratios: Fractions of each group's width the supernet runs
            (1.0 included: the largest subnet is the original model).
            Defaults to `(0.5, 0.75, 1.0)`.
          kernel_sizes: Smaller odd kernel sizes convolutions with a larger
            square kernel may also run (their kernel's centre), e.g. `(3, 5)`.
            Defaults to `None`: kernels keep their size.
          channel_divisible: Every width is a multiple of this. Defaults to
            `8`.
          excludes: Layers (names or objects) whose output channels keep
            their full width and whose kernels keep their size. Defaults to
            none.
          criterion: Importance criterion ordering each group's channels, so
            that every width keeps the most important ones. Defaults to
            `"l1"`.
          search_space: `"auto"` focuses the widths on the groups that
            convolutions with a kernel larger than 1 produce or carry when
            depthwise convolutions outnumber regular ones (as Vitis does) and
            uses every prunable group otherwise; `"all"` and `"spatial"`
            force either. Defaults to `"auto"`.
          num_random_subnets: Random subnets per training step, besides the
            largest and the smallest. Defaults to `2`.
          distillation_weight: Weight of the soft distillation loss from the
            original model, for every subnet (0 turns it off). Defaults to
            `1.0`.
          inplace_distillation_weight: Weight of the soft distillation loss
            from the largest subnet, for the others. Defaults to `1.0`.
          distillation_loss: `"kl_logits"` (KL divergence of the softmax of
            outputs that are logits), `"kl_probabilities"` (of outputs that
            are probabilities), `"mse"`, or `"auto"`: probabilities when
            every model output comes out of a softmax, logits otherwise.
            Defaults to `"auto"`.

        Returns:
          An `OFASupernet` (uncompiled); also kept as `pruner.supernet`.

        Raises:
          ValueError: for bad arguments, or when no group and no kernel of
            the model can be elastic (the message gives each group's reason).
        """
        ratios = ofa_arguments.check_ratios(expand_ratios)
        sizes = ofa_arguments.check_kernel_sizes(kernel_sizes)
        channel_divisible = validation.check_positive_int("channel_divisible", channel_divisible)
        if search_space not in SEARCH_SPACES:
            raise ValueError(f"Invalid `search_space`: expected one of {SEARCH_SPACES}. "
                             f"Received: search_space={search_space!r}")
        if isinstance(num_random_subnets, bool) or not isinstance(
                num_random_subnets, numbers.Integral) or num_random_subnets < 0:
            raise ValueError("Invalid `num_random_subnets`: expected an int >= 0. Received: "
                             f"num_random_subnets={num_random_subnets!r}")
        distillation_weight = ofa_arguments.check_weight("distillation_weight", distillation_weight)
        inplace_weight = ofa_arguments.check_weight("inplace_distillation_weight",
                                       inplace_distillation_weight)
        choices = ("auto",) + DISTILLATION_LOSSES
        if distillation_loss not in choices:
            raise ValueError(f"Invalid `distillation_loss`: expected one of {choices}. "
                             f"Received: distillation_loss={distillation_loss!r}")
        criterion_name, _ = importance.get_criterion(criterion)
        excluded = self._adapter.resolve_layers(excludes)
        deps = self._dependency_graph(excluded)
        check_flops_known(self._deps, "build a supernet searched by FLOPs")
        layers = self._supernet_class.LAYERS
        space, specs, classes = SpaceBuilder(deps, layers.elastic_class,
                                             layers.masked_weight, excluded).build(
            ratios, sizes, channel_divisible, search_space)
        if not space.groups and not space.kernels:
            reasons = "\n".join(f"  group {name!r}: {why}" for name, why in space.fixed.items())
            raise ValueError(f"Nothing in model {self.graph.name!r} can be elastic: no channel "
                             f"group has an elastic width and no kernel an elastic size.\n"
                             f"{reasons}")
        weights = self._adapter.all_weights()
        order = importance_order(deps, [deps.group(g.name) for g in space.groups], weights,
                                 criterion)
        layer_weights = reordered_weights(deps, weights, order)
        configs = {}
        for path, spec in specs.items():
            configs[path] = dict(self.graph.nodes_of_layer(path)[0].config, ofa_elastic=spec)
            extra = []
            if spec["groups"]:
                extra.append(np.array(spec["widths"], np.int32))
            if spec["kernel_sizes"]:
                extra.append(np.array(max(spec["kernel_sizes"]), np.int32))
            layer_weights[path] = list(layer_weights[path]) + extra
        rebuilt = self._adapter.rebuild(layer_configs=configs, layer_weights=layer_weights,
                                        layer_classes=classes)
        teacher = self._adapter.rebuild() if distillation_weight > 0 else None
        if distillation_loss == "auto":
            distillation_loss = ("kl_probabilities" if self._outputs_are_probabilities()
                                 else "kl_logits")
        settings = {
            "space": space.get_config(), "num_random_subnets": int(num_random_subnets),
            "distillation_weight": distillation_weight,
            "inplace_distillation_weight": inplace_weight,
            "distillation_loss": distillation_loss,
            "source": {"model_name": self.graph.name, "graph_digest": self.model_digest},
            "build": {"expand_ratios": list(ratios), "kernel_sizes": list(sizes or ()),
                      "channel_divisible": channel_divisible, "excludes": sorted(excluded),
                      "criterion": criterion_name, "search_space": search_space},
        }
        self.supernet = self._supernet_class.from_rebuilt(rebuilt, settings, teacher)
        logger.info("Supernet of %r: %s", self.graph.name, space.describe())
        return self.supernet

    def _outputs_are_probabilities(self):
        for tid in self.graph.outputs:
            node = self.graph.producer(tid)
            if node is None:
                return False
            spec = self._deps.node_spec(node.name)
            if node.class_name == "Softmax" or spec.role is Role.BARRIER and "softmax" in (
                    spec.reason or ""):
                continue
            if formulas.activation_name(node.config) != "softmax":
                return False
        return True

    def _supernet(self, supernet):
        supernet = supernet if supernet is not None else self.supernet
        if supernet is None:
            raise ValueError("No supernet: call pruner.ofa_model() first, or pass the trained "
                             "supernet (e.g. loaded with keras.models.load_model) as "
                             "`supernet=`.")
        settings = getattr(supernet, "settings", None)
        if not isinstance(supernet, SupernetMixin) or settings is None:
            raise ValueError("Invalid `supernet`: expected an OFASupernet built by "
                             f"OFAPruner.ofa_model(). Received: {type(supernet).__name__}")
        if not isinstance(supernet, self._supernet_class):
            raise ValueError(f"Invalid `supernet`: it is a {supernet.LAYERS.keras.__name__} "
                             f"model but {self.graph.name!r} is a "
                             f"{self._supernet_class.LAYERS.keras.__name__} model. Build the "
                             "supernet from the model in the same Keras flavour.")
        if settings["source"]["graph_digest"] != self.model_digest:
            raise ValueError(f"Invalid `supernet`: it was built from model "
                             f"{settings['source']['model_name']!r} of another architecture "
                             f"than {self.graph.name!r}. Use an OFAPruner of the model the "
                             "supernet was built from.")
        return supernet

    def _supernet_reader(self, supernet):
        """(adapter, dependency graph) of the supernet as it is now."""
        adapter = adapters.adapter_for(supernet, self._input_signature)
        return adapter, DependencyGraph(adapter.graph)

    def describe_space(self, supernet=None):
        """The elastic groups and kernels of the supernet, with their choices."""
        return self._supernet(supernet).space.describe()

    # Search -------------------------------------------------------------------------------

    def search(self, eval_fn, calibration_data, flops_targets=(0.3, 0.5, 0.7), population=50,
               generations=20, seed=0, calibration_steps=50, batch_size=32, mode="max",
               tolerance=0.01, mutation_probability=0.1, parent_ratio=0.25,
               mutation_ratio=0.5, supernet=None, verbose=1):
        """Finds the best subnet within a FLOPs band around each target, by evolution.

        Each candidate configuration is set on one calibration copy of the
        supernet, its BatchNormalization statistics re-estimated on the
        calibration batches, and scored by `eval_fn`. Scores are stored in
        `<workspace>/ofa/` as soon as they are measured, keyed by the
        supernet's weights, its search space, the calibration and `mode`
        (not by target, population or seed: any search of the same supernet
        reuses them), so a killed search resumes, a repeated one is read
        back, and several processes searching at once split the
        configurations. When done, writes `report-<key>.csv` and
        `report-<key>.png` (every scored configuration, the Pareto front and
        each target's subnet).

        Args:
          eval_fn: `fn(model) -> float`, e.g. accuracy on held-out training
            data; it receives a Keras model computing the candidate.
          calibration_data: Training inputs for adaptive BN (a dataset, arrays,
            an `(x, y)` tuple or a `calibration_fn(model)`), as for
            `OneStepPruningRunner.search`.
          flops_targets: FLOPs reductions to search, each in (0, 1).
            Defaults to `(0.3, 0.5, 0.7)`.
          population: Configurations per generation. Defaults to `50`.
          generations: Generations per target, the random first one
            included. Defaults to `20`.
          seed: Seed of the search. Defaults to `0`.
          calibration_steps: Calibration batches. Defaults to `50`.
          batch_size: Batch size of array calibration data. Defaults to `32`.
          mode: `"max"` when a higher score is better, `"min"` when lower is.
            Defaults to `"max"`.
          tolerance: Half-width of each FLOPs band, in reduction points.
            Defaults to `0.01`.
          mutation_probability: Chance that a mutation redraws each gene.
            Defaults to `0.1`.
          parent_ratio: Fraction of each generation kept as parents.
            Defaults to `0.25`.
          mutation_ratio: Fraction of each generation made by mutation (the
            rest by crossover). Defaults to `0.5`.
          supernet: The trained supernet. Defaults to the last `ofa_model()`.
          verbose: 1 prints progress and the result table, 0 is silent.
            Defaults to `1`.

        Returns:
          Dict target -> `OFASubnet` (its `SubnetConfig`, analytic FLOPs
          reduction and score).

        Raises:
          ValueError: for bad arguments, or a target no configuration reaches.
          AnalysisError: when `eval_fn` raises or returns a non-number;
            scored configurations are kept.
          AnalysisCacheError: when a result file is corrupted.
        """
        if not callable(eval_fn):
            raise ValueError("Invalid `eval_fn`: expected a callable model -> float. "
                             f"Received: eval_fn={eval_fn!r}")
        targets = ofa_arguments.check_targets(flops_targets)
        population = validation.check_positive_int("population", population)
        generations = validation.check_positive_int("generations", generations)
        seed = validation.check_seed(seed)
        calibration_steps = validation.check_positive_int("calibration_steps", calibration_steps)
        batch_size = validation.check_positive_int("batch_size", batch_size)
        if mode not in ("max", "min"):
            raise ValueError("Invalid `mode`: expected 'max' (higher is better) or 'min'. "
                             f"Received: mode={mode!r}")
        tolerance = validation.check_ratio("tolerance", tolerance, low_inclusive=False)
        mutation_probability = validation.check_ratio("mutation_probability",
                                                      mutation_probability, high_inclusive=True)
        parent_ratio = validation.check_ratio("parent_ratio", parent_ratio,
                                              low_inclusive=False, high_inclusive=True)
        mutation_ratio = validation.check_ratio("mutation_ratio", mutation_ratio,
                                                high_inclusive=True)
        supernet = self._supernet(supernet)
        space = supernet.space
        adapter, _ = self._supernet_reader(supernet)
        if callable(calibration_data) and not hasattr(calibration_data, "take"):
            calibration, data_key = calibration_data, _function_name(calibration_data)
        else:
            calibration = PreparedBatches(calibration_batches(calibration_data,
                                                              calibration_steps, batch_size))
            data_key = batches_digest(calibration)
        key = {"graph_digest": adapter.graph.digest(),
               "weights_digest": digests.weights_digest(base_weights(adapter.graph,
                                                              adapter.all_weights())),
               "space": space.get_config(), "mode": mode,
               "calibration": {"data": data_key, "steps": calibration_steps,
                               "batch_size": batch_size}}
        store = ConfigStore(self.search_folder, key)
        flops = ConfigFlops(self._deps, space)
        scoring = ClaimedScoring(store, flops, lambda: ConfigScorer(
            adapter, space, supernet.LAYERS.set_active,
            lambda model, calibrating: make_calibration(model, calibrating, calibration),
            eval_fn))
        evolution = EvolutionarySearch(space, flops, scoring, mode, population, generations,
                                       tolerance, mutation_probability, parent_ratio,
                                       mutation_ratio, seed)
        for target in targets:
            evolution.check_target(target)
        front, counts = {}, {}
        for target in targets:
            progress = Progbar(generations, unit_name="generation") if verbose else None
            if verbose:
                print(f"Searching subnets at {target:.0%} fewer FLOPs")

            def report(generation, _, progress=progress):
                if progress is not None and generation:
                    progress.update(generation)
            best, scored = evolution.run(target, on_generation=report)
            if progress is not None:
                progress.update(generations, finalize=True)
            front[target] = OFASubnet(space.decode(best), flops.reduction(best), scored[best],
                                      target)
            counts[target] = len(scored)
        self._write_reports(store, front, space, mode, counts, verbose)
        self._last_search = front
        return dict(front)

    def _write_reports(self, store, front, space, mode, counts, verbose):
        base = os.path.join(self.search_folder, f"report-{store.key_id}")
        search_report.write_csv(base + ".csv", front, space)
        points = [(r["flops_reduction"], r["score"]) for r in store.read().values()]
        search_report.plot(base + ".png", points, front, self.graph.name, mode)
        text = search_report.table(front, counts)
        logger.info("Once-for-all search saved to %s.csv\n%s", base, text)
        if verbose:
            print(text)

    # Static subnets -------------------------------------------------------------------------

    def get_static_subnet(self, subnet, supernet=None, calibration_data=None,
                          calibration_steps=50, batch_size=32):
        """A configuration of the supernet as a plain slim model of the supernet's flavour.

        Its outputs equal the supernet's at that configuration (with the
        supernet's BatchNormalization statistics, or re-estimated ones when
        `calibration_data` is given). It has no masks and no custom layers:
        it saves, exports and fine-tunes like any slim model.

        Args:
          subnet: An `OFASubnet` from `search`, a `SubnetConfig`, or a dict
            `{"widths": {group: width}, "kernel_sizes": {layer: size}}`.
          supernet: The supernet. Defaults to the last `ofa_model()`.
          calibration_data: Optional training inputs to re-estimate the
            BatchNormalization statistics of the subnet, as the search
            scored it (pass the search's calibration data to reproduce its
            score). Defaults to `None`: the supernet's statistics.
          calibration_steps: Calibration batches. Defaults to `50`.
          batch_size: Batch size of array calibration data. Defaults to `32`.

        Returns:
          A new model of the same Keras flavour (uncompiled).

        Raises:
          ValueError: for a configuration outside the search space (a width
            of a group that is not elastic, or not among its choices).
        """
        supernet = self._supernet(supernet)
        adapter, deps = self._supernet_reader(supernet)
        builder = StaticSubnetBuilder(adapter, deps, supernet.space,
                                      supernet.LAYERS.static_classes)
        model = builder.build(subnet)
        if calibration_data is not None:
            adaptive_bn(model, calibration_data, calibration_steps, batch_size)
        return model
