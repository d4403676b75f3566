"""The actions of `vai_p_tf2`, each a function of the parsed flags."""

import os

import numpy as np

from vai_optimizer_tf.cli.loading import (CliError, checked_metric, fit_to_model, input_signature,
                                          load_callable, load_dataset, load_model)


def _output_dir(flags):
    folder = flags.output_dir or flags.workspace
    os.makedirs(folder, exist_ok=True)
    return folder


def _save(model, flags, file_name, sparse=False):
    from vai_optimizer_tf import export  # pylint: disable=import-outside-toplevel
    return export.save_keras(model, os.path.join(_output_dir(flags), file_name),
                             sparse_ok=sparse)


def _runner(model, flags):
    import vai_optimizer_tf as vot  # pylint: disable=import-outside-toplevel
    return vot.IterativePruningRunner(model, input_signature(flags.input_shape, model),
                                      workspace=flags.workspace)


def _dataset_eval_fn(flags, model):
    _, (x_test, y_test) = load_dataset(flags.dataset)
    n = flags.eval_samples or len(x_test)
    x, y = fit_to_model(x_test[:n], model), y_test[:n]

    def accuracy(m):
        return float(np.mean(np.argmax(m.predict(x, batch_size=256, verbose=0), -1) == y))

    return accuracy, (x, y)


def _user_eval_fn(flags):
    """The checked --eval_fn, imported before the model is loaded (it may register layers)."""
    if flags.eval_fn:
        return checked_metric(load_callable(flags.eval_fn, "eval_fn"), "eval_fn")
    return None


def _eval_fn(flags, model, required, user_fn):
    """The eval_fn from --eval_fn or --dataset, and labelled data if any."""
    if user_fn is not None:
        return user_fn, None
    if flags.dataset:
        fn, data = _dataset_eval_fn(flags, model)
        return checked_metric(fn, "dataset"), data
    if required:
        raise CliError(f"--action={flags.action} needs --eval_fn=module:function or "
                       f"--dataset={{example,fashion_mnist,mnist_5k}}.")
    return None, None


def _ana_ratios(flags):
    try:
        return tuple(float(r) for r in flags.ana_ratios)
    except ValueError as e:
        raise CliError(f"--ana_ratios: expected comma-separated floats in (0, 1). "
                       f"Received: {','.join(flags.ana_ratios)}") from e


def _describe_steps(steps, limit=8):
    from vai_optimizer_tf.analysis import sensitivity_cache  # pylint: disable=import-outside-toplevel
    names = ["baseline" if g == sensitivity_cache.BASELINE else f"{g} at {r:.0%}"
             for g, r in steps]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def ana(flags, log):
    from vai_optimizer_tf.cli.flags import parse_shard  # pylint: disable=import-outside-toplevel
    if flags.merge and flags.shard:
        raise CliError("--merge reads what every shard wrote; drop --shard.")
    if flags.merge and flags.forced:
        raise CliError("--merge evaluates nothing; drop --forced.")
    user_fn = None if flags.merge else _user_eval_fn(flags)
    ratios = _ana_ratios(flags)
    model = load_model(flags.model)
    runner = _runner(model, flags)
    folder = os.path.join(flags.workspace, "ana")
    if flags.merge:
        cache = runner.merge_analysis(ratios=ratios, excludes=flags.excludes or None,
                                      mode=flags.metric_mode, criterion=flags.criterion)
        missing = cache.missing_steps()
        total = 1 + len(cache.groups) * len(cache.ratios)
        if missing:
            raise CliError(f"--merge: the analysis in {folder} is incomplete: {len(missing)} of "
                           f"{total} steps missing: {_describe_steps(missing)}. Run the shards "
                           "that did not finish (or --action=ana without --shard, which "
                           "evaluates only the missing steps), then --merge again.")
        log(f"analysis of {len(cache.groups)} groups merged ({total} steps) in {folder}")
        return
    eval_fn, _ = _eval_fn(flags, model, True, user_fn)
    shard = parse_shard(flags.shard)
    cache = runner.ana(eval_fn, excludes=flags.excludes or None, forced=flags.forced,
                       ratios=ratios, shard=shard, mode=flags.metric_mode,
                       criterion=flags.criterion)
    if shard is None:
        log(f"analysis of {len(runner.prunable_groups)} groups saved in {folder}")
        return
    total = 1 + len(cache.groups) * len(cache.ratios)
    done = total - len(cache.missing_steps())
    log(f"shard {shard[0]}/{shard[1]} done: {done} of {total} steps of the analysis are "
        f"finished in {folder}. When every shard is done, run --action=ana --merge.")


def prune(flags, log):
    if flags.mode == "one_step":
        return search(flags, log)
    from vai_optimizer_tf.cli.flags import parse_channel_divisible  # pylint: disable=import-outside-toplevel
    model = load_model(flags.model)
    no_target = flags.ratio is None and flags.threshold is None and flags.latency is None
    if no_target and not flags.spec:
        raise CliError("--action=prune needs --ratio (FLOPs reduction, e.g. 0.5), --latency "
                       "(fraction of the baseline's latency, e.g. 0.5), --threshold (largest "
                       "metric drop, e.g. 0.01) or --spec (an existing spec).")
    if no_target and not os.path.isfile(flags.spec):
        raise CliError(f"--spec: no such file: {flags.spec!r} (without --ratio, --latency or "
                       "--threshold, prune applies an existing spec).")
    runner = _runner(model, flags)
    sparse = runner.prune(ratio=flags.ratio, threshold=flags.threshold, spec_path=flags.spec,
                          excludes=flags.excludes or None, criterion=flags.criterion,
                          channel_divisible=parse_channel_divisible(flags.channel_divisible),
                          latency=flags.latency, device=flags.device,
                          batch_size=flags.latency_batch_size)
    spec_path = runner.latest_spec_path()
    runner.summary(spec_path, print_fn=log)
    path = _save(sparse, flags, "sparse.keras", sparse=True)
    log(f"sparse model saved to {path}; spec {spec_path}")


def _calibration(flags, model):
    """--calibration_fn, or training images of --dataset, for adaptive BN."""
    if flags.calibration_fn:
        return load_callable(flags.calibration_fn, "calibration_fn")
    (x_train, _), _ = load_dataset(flags.dataset)
    return fit_to_model(x_train[:flags.calibration_steps * 64], model)


def search(flags, log):
    """One-step pruning: scores --num_subnets candidates, then prunes to the best."""
    import vai_optimizer_tf as vot  # pylint: disable=import-outside-toplevel
    from vai_optimizer_tf.cli.flags import (  # pylint: disable=import-outside-toplevel
        parse_channel_divisible, parse_shard)
    user_fn = _user_eval_fn(flags)
    calibration_fn = (load_callable(flags.calibration_fn, "calibration_fn")
                      if flags.calibration_fn else None)
    model = load_model(flags.model)
    eval_fn, _ = _eval_fn(flags, model, True, user_fn)
    calibration = calibration_fn or _calibration(flags, model)
    runner = vot.OneStepPruningRunner(model, input_signature(flags.input_shape, model),
                                      workspace=flags.workspace)
    shard = parse_shard(flags.shard)
    subnets = runner.search(flags.ratio, eval_fn, calibration,
                            calibration_steps=flags.calibration_steps,
                            num_subnets=flags.num_subnets, excludes=flags.excludes or None,
                            channel_divisible=parse_channel_divisible(flags.channel_divisible),
                            criterion=flags.criterion, seed=flags.seed, shard=shard,
                            mode=flags.metric_mode, batch_size=64)
    folder = os.path.join(flags.workspace, "one_step")
    if len(subnets) < flags.num_subnets:
        log(f"shard {shard[0]}/{shard[1]} done: {len(subnets)} of {flags.num_subnets} "
            f"candidates are scored in {folder}. When every shard is done, run "
            "--action=search again without --shard to prune to the best.")
        return
    sparse = runner.prune(spec_path=flags.spec)
    spec_path = runner.latest_spec_path()
    runner.summary(spec_path, print_fn=log)
    path = _save(sparse, flags, "sparse.keras", sparse=True)
    best = vot.PruningSpec.load(spec_path).metadata["subnet_index"]
    log(f"best of {len(subnets)} subnets: #{best}; sparse model saved to {path}; "
        f"spec {spec_path}")


def _compile_for_dataset(model, flags, x):
    from vai_optimizer_tf.graph import adapters  # pylint: disable=import-outside-toplevel
    keras = adapters.keras_module(adapters.flavour_of(model))  # the model's own Keras
    probe = np.asarray(model.predict(x[:16], verbose=0))
    is_probability = bool(np.all(probe >= 0) and np.allclose(probe.sum(-1), 1, atol=1e-3))
    model.compile(keras.optimizers.Adam(flags.learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=not is_probability),
                  metrics=["accuracy"])


def finetune(flags, log):
    train_fn = load_callable(flags.train_fn, "train_fn") if flags.train_fn else None
    model = load_model(flags.model)
    if train_fn is not None:
        trained = train_fn(model)
        if trained is not None and not hasattr(trained, "save"):
            raise CliError(f"--train_fn: {getattr(train_fn, '__name__', 'train_fn')} returned "
                           f"{type(trained).__name__}; return the trained model or None.")
        model = trained if trained is not None else model
    elif flags.dataset:
        (x_train, y_train), _ = load_dataset(flags.dataset)
        n = flags.train_samples or len(x_train)
        x, y = fit_to_model(x_train[:n], model), y_train[:n]
        _compile_for_dataset(model, flags, x)
        model.fit(x, y, batch_size=flags.batch_size, epochs=flags.epochs, verbose=2)
    else:
        raise CliError("--action=finetune needs --train_fn=module:function or "
                       "--dataset={example,fashion_mnist,mnist_5k}.")
    path = _save(model, flags, "finetuned.keras", sparse=True)
    log(f"fine-tuned model saved to {path}")


def _max_difference(model, other, signature):
    """Largest output difference of two models on two random inputs, relative to the scale."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    rng = np.random.RandomState(0)
    shapes = ([s.shape.as_list() for s in signature] if signature
              else [list(t.shape) for t in model.inputs])
    probe = [rng.rand(*[2] + [d or 32 for d in shape[1:]]).astype(tf.as_dtype(t.dtype).name)
             for shape, t in zip(shapes, model.inputs)]
    probe = probe[0] if len(probe) == 1 else probe
    ours = tf.nest.flatten(model(probe, training=False))
    theirs = tf.nest.flatten(other(probe, training=False))
    return max(float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(a)))))
               for a, b in zip(ours, theirs))


def transform(flags, log):
    model = load_model(flags.model)
    runner = _runner(model, flags)
    spec = flags.spec or runner.latest_spec_path()
    if not spec:
        raise CliError(f"--action=transform needs --spec, or a spec saved by prune in "
                       f"--workspace={flags.workspace!r}.")
    if not os.path.isfile(spec):
        raise CliError(f"--spec: no such file: {spec!r}")
    slim = runner.get_slim_model(spec)
    runner.summary(spec, print_fn=log)
    difference = _max_difference(model, slim, input_signature(flags.input_shape, model))
    log(f"max |slim - input model| output difference on random inputs (relative): "
        f"{difference:.2e}")
    if difference > 1e-3:
        log("warning: the input model's pruned channels are not all zero (was it trained "
            "outside the sparse model?), so the slim model's outputs differ from it.")
    path = _save(slim, flags, "slim.keras")
    log(f"slim model saved to {path}")


def stat(flags, log):
    import vai_optimizer_tf as vot  # pylint: disable=import-outside-toplevel
    model = load_model(flags.model)
    signature = input_signature(flags.input_shape, model)
    stats = vot.stat(model, signature)
    log(stats.summary())
    log(f"total: {stats.flops:,} FLOPs (1 multiply-add = 2 FLOPs), {stats.params:,} params")
    if flags.spec:
        if not os.path.isfile(flags.spec):
            raise CliError(f"--spec: no such file: {flags.spec!r}")
        _runner(model, flags).summary(flags.spec, print_fn=log)


def _check_export_paths(flags, formats, model):
    """Refuses, before any work, to replace existing files unless --overwrite."""
    from vai_optimizer_tf import export as export_lib  # pylint: disable=import-outside-toplevel
    from vai_optimizer_tf.utils import atomic  # pylint: disable=import-outside-toplevel
    planned = export_lib.output_paths(flags.output_dir or flags.workspace, formats,
                                      flags.output_name or model.name)
    try:
        atomic.check_writable(planned, flags.overwrite)
    except FileExistsError as e:
        raise CliError(f"{e.filename} already exists; pass --overwrite to replace it, or "
                       f"choose another --output_dir or --output_name.") from e


def export(flags, log):
    from vai_optimizer_tf import export as export_lib  # pylint: disable=import-outside-toplevel
    try:
        formats = export_lib.check_formats(flags.formats)
    except ValueError as e:
        raise CliError(f"--formats: expected names from {', '.join(export_lib.FORMATS)}. "
                       f"Received: {','.join(flags.formats)}") from e
    lite = any(f.startswith("tflite") for f in formats)
    user_fn = _user_eval_fn(flags) if lite else None
    representative_fn = (load_callable(flags.representative_fn, "representative_fn")
                         if flags.representative_fn and "tflite_int8" in formats else None)
    model = load_model(flags.model)
    _check_export_paths(flags, formats, model)
    eval_fn, labelled = _eval_fn(flags, model, False, user_fn) if lite else (None, None)
    representative = None
    if "tflite_int8" in formats:
        if representative_fn is not None:
            representative = representative_fn()
        elif flags.dataset:
            (x_train, _), _ = load_dataset(flags.dataset)
            representative = fit_to_model(x_train[:100], model)
        else:
            raise CliError("--formats=tflite_int8 needs calibration data: "
                           "--representative_fn=module:function or --dataset.")
    paths = export_lib.export_model(
        model, _output_dir(flags), formats, name=flags.output_name,
        batch_size=flags.serving_batch_size,
        input_signature=input_signature(flags.input_shape, model),
        representative_data=representative,
        eval_fn=eval_fn if labelled is None else None, validation_data=labelled, print_fn=log,
        overwrite=flags.overwrite)
    for fmt in formats:
        log(f"{fmt}: {paths[fmt]}")


ACTIONS = {"ana": ana, "prune": prune, "search": search, "finetune": finetune,
           "transform": transform, "stat": stat, "export": export}
