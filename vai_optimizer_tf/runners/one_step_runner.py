"""`OneStepPruningRunner`: prune once, to the best of many candidate subnets.

EagleEye's one-step pruning (Li et al., 2020), as Vitis AI offers it: sample
candidate subnets at the FLOPs target, re-estimate each candidate's
BatchNormalization statistics on a few training batches (adaptive BN), score
it with `eval_fn`, keep the best, and fine-tune it once.
"""

import logging
import numbers
import os

from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.planning.divisibility import (resolve_channel_divisible,
                                                    warn_if_groups_stay_whole)
from vai_optimizer_tf.planning.spec_builder import build_spec
from vai_optimizer_tf.planning.width_flops import WidthFlops
from vai_optimizer_tf.runners.base_runner import PruningRunner
from vai_optimizer_tf.search import subnet_results
from vai_optimizer_tf.search.adaptive_bn import (PreparedBatches, calibrate_in_place,
                                                 make_calibration)
from vai_optimizer_tf.search.calibration_data import batches_digest, calibration_batches
from vai_optimizer_tf.search.candidate_scorer import CandidateScorer
from vai_optimizer_tf.search.subnet_results import Subnet
from vai_optimizer_tf.search.subnet_sampler import SubnetSampler
from vai_optimizer_tf.search.subnet_search import SubnetSearch
from vai_optimizer_tf.search.subnet_store import SubnetStore
from vai_optimizer_tf.stats.model_stats import check_flops_known
from vai_optimizer_tf.utils import validation

logger = logging.getLogger("vai_optimizer_tf")


class OneStepPruningRunner(PruningRunner):
    """Searches candidate subnets with adaptive BN and prunes to the best, in one step.

    `search` samples `num_subnets` candidate subnets whose FLOPs reduction is
    within one point of `ratio` (candidate 0 is the uniform cut), scores each
    with `eval_fn` after re-estimating its BatchNormalization statistics on
    calibration batches, and stores every score in the workspace as soon as
    it is measured: a killed search resumes, and shards or concurrent runs
    split the candidates. `prune` builds the best subnet (or the one you pick)
    as a sparse model with its adapted statistics, ready for one fine-tuning.
    The model passed in is never modified.

    Args:
      model: A tf_keras or Keras 3 Sequential or Functional model.
      input_signature: Optional `tf.TensorSpec` (or list) for models whose
        input shape is not fully defined; only used to count FLOPs. Defaults
        to the model's own input shapes.
      workspace: Folder for the search results, specs and the
        `latest_spec.json` pointer. Defaults to `".vai"`.

    Example:

    ```python
    import numpy as np
    import tf_keras
    import vai_optimizer_tf as vot

    model = tf_keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3),
                                              classes=10)
    x = np.random.rand(128, 32, 32, 3).astype("float32")
    y = np.random.randint(0, 10, 128)

    def eval_fn(m):
        return float(np.mean(np.argmax(m(x[:64], training=False), axis=-1) == y[:64]))

    runner = vot.OneStepPruningRunner(model, workspace="ws")
    runner.search(ratio=0.5, eval_fn=eval_fn, calibration_data=x[64:],
                  calibration_steps=2, num_subnets=4, verbose=0)
    sparse = runner.prune()                  # the best subnet; fine-tune it with fit
    slim = runner.get_slim_model(weights_from=sparse)
    ```
    """

    def __init__(self, model, input_signature=None, workspace=".vai"):
        super().__init__(model, input_signature, workspace)
        self._search = None

    @property
    def search_folder(self):
        return os.path.join(self.workspace, "one_step")

    # Search -------------------------------------------------------------------------

    def search(self, ratio=None, eval_fn=None, calibration_data=None, calibration_steps=50,
               num_subnets=200, excludes=None, channel_divisible="auto", criterion="l1", seed=0,
               shard=None, verbose=1, mode="max", batch_size=32, ratio_spread=0.25,
               latency=None, device="tf", latency_batch_size=1):
        """Scores `num_subnets` candidate subnets at a FLOPs- or latency-reduction target.

        Args:
          ratio: FLOPs reduction of every candidate (within one point), in
            (0, 1).
          eval_fn: `fn(model) -> float`, e.g. accuracy on held-out training
            data. It receives a Keras model (compiled like yours when yours is
            compiled) with the candidate's channels zeroed and its statistics
            re-estimated.
          calibration_data: Training inputs for adaptive BN: a
            `tf.data.Dataset` of batches, a numpy array (or a list/dict of
            arrays), an `(x, y)` tuple (labels are ignored), or a Vitis-style
            `calibration_fn(model)` that runs `model(x, training=True)`.
          calibration_steps: Batches read for adaptive BN. Defaults to `50`.
          num_subnets: Candidates to score, the uniform cut included.
            Defaults to `200`.
          excludes: Layers whose output channels must not shrink. Defaults
            to none.
          channel_divisible: Kept widths are multiples of this; `"auto"` is
            the multiple this CPU runs fastest (16 with AVX-512, else 8), and
            groups no wider stay whole. Defaults to `"auto"`.
          criterion: Importance criterion that picks the kept channels of
            each group. Defaults to `"l1"`.
          seed: Seed of the candidate sequence. Defaults to `0`.
          shard: `(i, n)` to score only candidates i, i + n, ... so n
            processes or machines sharing the workspace split the search;
            any later call merges. Defaults to all candidates.
          verbose: 1 shows a progress bar and the best candidates, 0 is
            silent. Defaults to `1`.
          mode: `"max"` when a higher score is better, `"min"` when lower is.
            Defaults to `"max"`.
          batch_size: Batch size of array calibration data. Defaults to `32`.
          ratio_spread: Half-width of the window per-group pruning ratios
            are drawn from, around the uniform cut's. Defaults to `0.25`.
          latency: Instead of `ratio`, the latency of every candidate as a
            fraction of the baseline's (within one point), predicted by the
            latency table measured on this machine (see
            `latency_cost`; built and cached in the workspace on first use).
          device: With `latency`: `"tf"` or `"tflite"`. Defaults to `"tf"`.
          latency_batch_size: With `latency`: the batch size timed. Defaults
            to `1`.

        Returns:
          The `Subnet`s scored so far for this search, by index (all of them
          once every shard has finished).

        Raises:
          ValueError: for bad arguments, or a target the rounding steps
            cannot reach.
          AnalysisError: when `eval_fn` raises or returns a non-number;
            finished candidates are kept.
          AnalysisCacheError: when a result file is corrupted.
        """
        if (ratio is None) == (latency is None):
            raise ValueError("Pass exactly one target: `ratio` (the FLOPs reduction, e.g. "
                             "ratio=0.5) or `latency` (a fraction of the baseline's latency, "
                             f"e.g. latency=0.5). Received: ratio={ratio!r}, latency={latency!r}")
        if ratio is not None:
            ratio = validation.check_ratio("ratio", ratio, low_inclusive=False)
        else:
            latency = validation.check_ratio("latency", latency, low_inclusive=False)
        if calibration_data is None:
            raise ValueError("Invalid `calibration_data`: adaptive BN needs a few batches of "
                             "training images (a dataset, an array, (x, y) or a "
                             "calibration_fn(model)). Received: calibration_data=None")
        if not callable(eval_fn):
            raise ValueError("Invalid `eval_fn`: expected a callable model -> float. "
                             f"Received: eval_fn={eval_fn!r}")
        calibration_steps = validation.check_positive_int("calibration_steps", calibration_steps)
        num_subnets = validation.check_positive_int("num_subnets", num_subnets)
        requested, channel_divisible = channel_divisible, resolve_channel_divisible(
            channel_divisible)
        batch_size = validation.check_positive_int("batch_size", batch_size)
        seed = validation.check_seed(seed)
        shard = validation.check_shard(shard)
        if mode not in ("max", "min"):
            raise ValueError("Invalid `mode`: expected 'max' (higher is better) or 'min'. "
                             f"Received: mode={mode!r}")
        ratio_spread = validation.check_ratio("ratio_spread", ratio_spread, high_inclusive=True)
        criterion_name, _ = importance.get_criterion(criterion)
        excluded = self._adapter.resolve_layers(excludes)
        deps = self._dependency_graph(excluded)
        if ratio is not None:
            check_flops_known(deps, f"search subnets at a FLOPs reduction (ratio={ratio})")
        warn_if_groups_stay_whole(requested, channel_divisible, deps.prunable_groups)
        if not deps.prunable_groups:
            raise ValueError(f"Model {self.graph.name!r} has no prunable channel group (see "
                             "runner.describe_groups()); there is nothing to search.")
        if callable(calibration_data) and not hasattr(calibration_data, "take"):
            calibration, data_key = calibration_data, _function_name(calibration_data)
        else:
            calibration = PreparedBatches(calibration_batches(calibration_data, calibration_steps,
                                                              batch_size))
            data_key = batches_digest(calibration)
        flops = self._flops_of(deps)
        if latency is None:
            cost, target, target_key = flops, ratio, round(ratio, 6)
        else:
            cost = self.latency_cost(device, latency_batch_size, channel_divisible, excluded,
                                     verbose=verbose)
            target = 1.0 - latency
            target_key = {"latency": round(latency, 6), "device": device,
                          "batch_size": latency_batch_size,
                          "table": self.latency_session(device, latency_batch_size).table.key}
        sampler = SubnetSampler(deps.prunable_groups, cost, target, channel_divisible,
                                ratio_spread=ratio_spread, seed=seed,
                                metric="FLOPs" if latency is None else "latency")
        key = {"graph_digest": self.model_digest, "weights_digest": self._adapter.weights_digest(),
               "target": target_key, "seed": seed, "excludes": sorted(excluded),
               "channel_divisible": channel_divisible, "criterion": criterion_name,
               "ratio_spread": round(ratio_spread, 6), "mode": mode,
               "calibration": {"data": data_key, "steps": calibration_steps,
                               "batch_size": batch_size}}
        store = SubnetStore(self.search_folder, key)

        def make_scorer():
            return CandidateScorer(
                self._adapter, deps,
                lambda model, calibrating: make_calibration(model, calibrating, calibration),
                eval_fn, criterion)

        indices = [i for i in range(num_subnets) if shard is None or i % shard[1] == shard[0]]
        SubnetSearch(deps, sampler, make_scorer, store, verbose,
                     flops_reduction=lambda kept: _reduction(flops, deps, kept)).run(indices)
        done = store.read()
        subnets = [self._subnet(deps, i, done[i], None if latency is None else cost)
                   for i in range(num_subnets) if i in done]
        self._search = _SearchState(key, store, deps, subnets, calibration, criterion,
                                    channel_divisible, mode, target, latency)
        if len(subnets) == num_subnets:
            self._write_reports(self._search)
            if verbose:
                self.summary_of_search()
        return list(subnets)

    def _flops_of(self, deps):
        return self._width_flops() if deps is self._deps else WidthFlops(deps)

    @staticmethod
    def _subnet(deps, index, record, latency_cost=None):
        widths = {deps.group_at(i).name: w for i, w in record["widths"].items()}
        latency = (None if latency_cost is None else
                   1.0 - _reduction(latency_cost, deps, widths))
        return Subnet(index, record["flops_reduction"], record["score"], widths, latency)

    def _write_reports(self, state):
        base = os.path.join(self.search_folder, f"report-{state.store.key_id}")
        names = [g.name for g in state.deps.prunable_groups]
        subnet_results.write_csv(base + ".csv", state.subnets, names)
        subnet_results.plot(base + ".png", state.subnets, self.graph.name, state.target,
                            state.mode)
        logger.info("One-step search of %d subnets saved to %s.csv",
                    len(state.subnets), base)

    @property
    def subnets(self):
        """The `Subnet`s of the last `search` (index, FLOPs reduction, score, widths)."""
        return list(self._search.subnets) if self._search is not None else []

    def summary_of_search(self, top=10, print_fn=print):
        """Prints the best `top` subnets of the last search and the uniform cut."""
        self._require_search()
        text = subnet_results.table(self._search.subnets, self._search.mode, top)
        print_fn(text)
        return text

    def _require_search(self):
        if self._search is None:
            raise ValueError("No search in this runner yet: call runner.search(ratio, eval_fn, "
                             "calibration_data) first (a finished search is read back from "
                             "the workspace instantly).")

    # Pruning ------------------------------------------------------------------------

    def prune(self, index=None, mode="sparse", spec_path=None, adapt_bn=True):
        """Builds a subnet of the last search and saves its spec as the latest.

        Args:
          index: The candidate to build (see `subnets`). Defaults to the best
            score (ties go to the lower index, so the uniform cut wins ties).
          mode: `"sparse"` returns the sparse model (to fine-tune), `"slim"`
            the slim one. Defaults to `"sparse"`.
          spec_path: Where to save the spec. Defaults to
            `<workspace>/specs/<model>.one-step-ratio-<ratio>.json`.
          adapt_bn: Re-estimate the returned model's BatchNormalization
            statistics on the search's calibration data, as the candidate was
            scored. Defaults to `True`.

        Returns:
          A new model of the runner's model's Keras flavour (uncompiled).

        Raises:
          ValueError: without a search, or for an index that was not scored.
        """
        self._require_search()
        self._check_mode(mode)
        state = self._search
        by_index = {s.index: s for s in state.subnets}
        if index is None:
            chosen = subnet_results.best(state.subnets, state.mode)
        else:
            if isinstance(index, bool) or not isinstance(index, numbers.Integral) or \
                    int(index) not in by_index:
                raise ValueError(f"Invalid `index`: expected the index of a scored subnet, "
                                 f"0 to {max(by_index)}. Received: index={index!r}")
            chosen = by_index[int(index)]
        spec = build_spec(state.deps, self._adapter.all_weights(), chosen.widths,
                          state.criterion, state.channel_divisible, self.graph.name,
                          self.model_digest)
        baseline, pruned = self.stat(), self.stat(spec)
        if state.latency is not None:
            spec.metadata.update({"target_latency": state.latency,
                                  "predicted_latency": round(chosen.latency, 6)})
        spec.metadata.update({
            "method": "one_step",
            "target_flops_reduction": state.target if state.latency is None else None,
            "subnet_index": chosen.index, "subnet_score": chosen.score,
            "subnets_scored": len(state.subnets), "search_key": state.key,
            "baseline_flops": baseline.flops, "pruned_flops": pruned.flops,
            "flops_reduction": round(1 - pruned.flops / max(baseline.flops, 1), 6),
            "baseline_params": baseline.params, "pruned_params": pruned.params,
        })
        if spec_path is None:
            label = (f"one-step-ratio-{state.target:.2f}" if state.latency is None
                     else f"one-step-latency-{state.latency:.2f}")
            spec_path = self._workspace.spec_path(self.graph.name, label)
        model = self._save_and_build(spec, spec_path, mode)
        if adapt_bn:
            calibrate_in_place(model, lambda copy, calibrating: make_calibration(
                copy, calibrating, state.calibration))
        return model


def _reduction(cost, deps, kept_widths):
    """1 - cost(kept) / cost(baseline), for group name -> width."""
    counts = {deps.group(name).id: width for name, width in kept_widths.items()}
    return 1.0 - cost.total(counts) / cost.baseline


class _SearchState:
    """What `prune` needs from the last search."""

    def __init__(self, key, store, deps, subnets, calibration, criterion, channel_divisible,
                 mode, target, latency=None):
        self.key = key
        self.store = store
        self.deps = deps
        self.subnets = subnets
        self.calibration = calibration
        self.criterion = criterion
        self.channel_divisible = channel_divisible
        self.mode = mode
        self.target = target
        self.latency = latency


def _function_name(fn):
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
