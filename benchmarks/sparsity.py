"""N:M fine-grained sparsity, measured side by side: accuracy, fit overhead, size, latency.

One run, four measurements:

* **Accuracy.** A ResNet-20-style net (3 stages of 3 basic blocks, 16/32/64
  channels) is trained dense on Fashion-MNIST, then each arm fine-tunes a
  copy of it for the same budget: dense (more training), ours at 2:4 and at
  4:16 (75%), and TFMOT's `prune_low_magnitude(..., sparsity_m_by_n=(2, 4))`
  on the same layers (those whose input channels are a multiple of 4; the
  1-channel stem stays dense in every arm). Test accuracy and the pattern of
  the final kernels are reported.
* **Fit overhead.** The same net, batch 128: plain `fit` of the dense model;
  ours (the 2:4 sparse model, whose masks start dense, with
  `GradualSparsity` pruning at the first and middle step of each timed fit);
  TFMOT 2:4 with `UpdatePruningStep`; and, to show where the time goes, ours
  with tf_keras' default `_supports_tf_logs = False` (`fit` then syncs to
  convert the logs to numpy after every batch). The arms alternate in short repeats
  (rotating which goes first); the min and median ratios to plain `fit` are
  reported, in wall time and in the process's CPU time.
* **Model size.** TFLite files (float and int8) of the dense model and of
  the fine-tuned sparse models, written by `export_sparse_model` with
  `EXPERIMENTAL_SPARSITY`, whose pattern is read back and checked.
* **Latency.** A 1x1-conv-heavy MobileNet-style net (explicit symmetric
  padding, as XNNPACK's sparse path needs) at 96x96, dense vs 4:16, through
  the TFLite interpreter's default XNNPACK delegate on one thread;
  alternating repeats, min and median. XNNPACK only runs sparse kernels for
  fp32 subgraphs from a 3x3 stride-2 conv on 3 channels through 1x1 convs
  and depthwise convs to a global average pool, with more than 2/3 zeros in
  the 1x1 weights, and on x86 only on CPUs without AVX; the script prints
  whether this CPU has AVX.

The last line is the key ratio: fit overhead, ours / plain (target <= 1.05).

Run: python benchmarks/sparsity.py            (full run, 1-2 h on 2 cores)
     python benchmarks/sparsity.py --quick    (a few minutes; checks the script works)
     python benchmarks/sparsity.py --parts latency,fit   (only the timed parts, which
                                  want a quiet machine; --parts accuracy does not)
"""

import argparse
import os
import shutil
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from vai_optimizer_tf import datasets  # noqa: E402
from vai_optimizer_tf.planning import divisibility, latency_timer  # noqa: E402
from vai_optimizer_tf.sparsity import block_pattern  # noqa: E402

L = keras.layers
BATCH = 128


def resnet20(input_shape=(28, 28, 1), classes=10):
    """CIFAR ResNet-20: a 3x3 stem, 3 stages x 3 basic blocks (16/32/64 channels)."""
    inputs = keras.Input(input_shape)
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.ReLU()(L.BatchNormalization()(x))
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            strides = 2 if stage > 0 and block == 0 else 1
            y = L.Conv2D(width, 3, strides=strides, padding="same", use_bias=False)(x)
            y = L.ReLU()(L.BatchNormalization()(y))
            y = L.Conv2D(width, 3, padding="same", use_bias=False)(y)
            y = L.BatchNormalization()(y)
            if strides > 1:
                x = L.BatchNormalization()(L.Conv2D(width, 1, strides=strides,
                                                    use_bias=False)(x))
            x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(classes, name="logits")(x), name="resnet20")


def mobilenet_1x1(resolution=96, width=64):
    """A MobileNet-style net whose cost is in 1x1 convs, padded the way XNNPACK's sparse path needs.

    Stem: explicit 1-pixel padding + 3x3 stride-2 conv on 3 channels. Body:
    1x1 convs, downsampling by explicitly padded 3x3 stride-2 depthwise
    convs (a padded stride-1 depthwise would be folded into SAME padding by
    the converter, which XNNPACK's sparse path does not take). Head: global
    average pooling and a Dense layer.
    """
    inputs = keras.Input((resolution, resolution, 3))
    x = L.Conv2D(32, 3, strides=2, use_bias=False)(L.ZeroPadding2D(1)(inputs))
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    channels = width
    for stage in range(4):
        for _ in range(2):
            x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(channels, 1, use_bias=False)(x)))
        if stage < 3:
            x = L.DepthwiseConv2D(3, strides=2, use_bias=False)(L.ZeroPadding2D(1)(x))
            x = L.ReLU(6.0)(L.BatchNormalization()(x))
            channels *= 2
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(10)(x), name="mobilenet_1x1")


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def compile_(model, lr=1e-3):
    model.compile(keras.optimizers.Adam(lr), loss(), metrics=["accuracy"])
    return model


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=512, verbose=0), -1) == y))


def tfmot_2of4(dense, schedule):
    """TFMOT 2:4 on the layers whose input channels are a multiple of 4 (ours sparsify those)."""
    eligible = {l.name for l in dense.layers if isinstance(l, (L.Conv2D, L.Dense))
                and l.kernel.shape[-2 if isinstance(l, L.Conv2D) else 0] % 4 == 0}

    def clone(layer):
        new = layer.__class__.from_config(layer.get_config())
        if layer.name in eligible:
            return tfmot.sparsity.keras.prune_low_magnitude(
                new, pruning_schedule=schedule, sparsity_m_by_n=(2, 4))
        return new

    model = keras.models.clone_model(dense, clone_function=clone)
    for layer in dense.layers:  # the wrappers hold the layer's variables plus mask variables
        if layer.weights:
            target = model.get_layer(("prune_low_magnitude_" + layer.name)
                                     if layer.name in eligible else layer.name)
            inner = getattr(target, "layer", target)
            inner.set_weights(layer.get_weights())
    return model, eligible


def tfmot_violations(model, eligible):
    """Blocks of 4 input channels with fewer than 2 zeros, over TFMOT's stripped kernels."""
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    bad = total = 0
    for name in eligible:
        kernel = stripped.get_layer(name).kernel.numpy()
        axis = -2 if kernel.ndim == 4 else 0
        zeros = block_pattern.zeros_per_block(kernel, axis, 4)
        bad, total = bad + int(np.sum(zeros < 2)), total + zeros.size
    return bad, total


def run_accuracy(data, args, workdir):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(0)
    dense = compile_(resnet20())
    start = time.perf_counter()
    dense.fit(x_train, y_train, batch_size=BATCH, epochs=args.epochs, verbose=0)
    print(f"  baseline: {args.epochs} epochs in {time.perf_counter() - start:.0f} s, "
          f"test accuracy {accuracy(dense, x_test, y_test):.4f}")
    steps = args.finetune_epochs * -(-len(x_train) // BATCH)
    results, models = {}, {}

    def finetune(model, callbacks=()):
        compile_(model, args.finetune_lr)
        model.fit(x_train, y_train, batch_size=BATCH, epochs=args.finetune_epochs, verbose=0,
                  callbacks=list(callbacks))
        return accuracy(model, x_test, y_test)

    more = keras.models.clone_model(dense)
    more.set_weights(dense.get_weights())
    results["dense (same budget)"] = (finetune(more), "-")
    pruner = vot.SparsePruner(dense)
    for label, kwargs in (("ours 2:4", dict(w_sparsity=0.5, block_size=4)),
                          ("ours 4:16", dict(w_sparsity=0.75, block_size=16))):
        sparse = pruner.sparse_model(**kwargs)
        acc = finetune(sparse)
        report = vot.sparsity_report(sparse)
        results[label] = (acc, f"{report.violations} violations, "
                               f"{len(report.layers)} sparse kernels")
        models[label] = sparse
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=100)
    theirs, eligible = tfmot_2of4(dense, schedule)
    acc = finetune(theirs, [tfmot.sparsity.keras.UpdatePruningStep()])
    bad, total = tfmot_violations(theirs, eligible)
    results["TFMOT 2:4"] = (acc, f"{bad}/{total} blocks violate 2:4, {len(eligible)} kernels")
    base = results["dense (same budget)"][0]
    print(f"  fine-tuning: {args.finetune_epochs} epochs ({steps} steps), Adam "
          f"lr={args.finetune_lr}")
    for label, (acc, note) in results.items():
        print(f"  {label:<22} test accuracy {acc:.4f}  ({100 * (acc - base):+.2f} pp)  {note}")
    return dense, models, results


def run_sizes(dense, models, x_calibration, workdir):
    print("  TFLite file sizes (KB): dense encoding / sparse encoding; pattern read back")
    for label, model in models.items():
        result = vot.sparsity.export_sparse_model(
            model, os.path.join(workdir, label.replace(" ", "_").replace(":", "of")),
            representative_data=x_calibration, print_fn=None)
        for quantization, file in result.tflite.items():
            check = file.check
            print(f"  {label:<10} {quantization:<6} {file.dense_size_bytes / 1024:8.1f} / "
                  f"{file.size_bytes / 1024:8.1f}  ({file.size_bytes / file.dense_size_bytes:.2f}x)"
                  f"  {check.sparse_encoded}/{len(check.kernels)} sparse-encoded, "
                  f"{'compliant' if check.compliant else 'NOT COMPLIANT'}")


def time_fit(model, x, y, steps, callbacks):
    """`(wall seconds, CPU seconds of this process)` of one `fit` of `steps` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(x[:steps * BATCH], y[:steps * BATCH], batch_size=BATCH, epochs=1, verbose=0,
              shuffle=False, callbacks=callbacks)
    return time.perf_counter() - wall, time.process_time() - cpu


def run_fit_overhead(data, args):
    (x_train, y_train), _ = data
    n = args.steps * BATCH
    reps = -(-n // len(x_train))
    x, y = np.concatenate([x_train] * reps)[:n], np.concatenate([y_train] * reps)[:n]
    keras.utils.set_random_seed(0)
    dense = compile_(resnet20())
    total = (args.repeats + 1) * args.steps

    def schedule():
        return tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=total,
                                                    frequency=max(args.steps // 2, 1))

    ours = compile_(vot.SparsePruner(dense).sparse_model(0.5, 4, gradual=True))
    theirs, _ = tfmot_2of4(dense, schedule())
    compile_(theirs)
    def ours_syncing_logs():
        # Diagnostic arm: the same callback with tf_keras' default
        # `_supports_tf_logs = False`, which makes `fit` convert the logs to
        # numpy after every batch (TFMOT's UpdatePruningStep does too).
        callback = vot.callbacks.GradualSparsity(schedule())
        callback._supports_tf_logs = False
        return [callback]

    arms = {"plain": (dense, lambda: []),
            "ours": (ours, lambda: [vot.callbacks.GradualSparsity(schedule())]),
            "ours, logs as numpy": (ours, ours_syncing_logs),
            "tfmot": (theirs, lambda: [tfmot.sparsity.keras.UpdatePruningStep()])}
    for model, callbacks in arms.values():  # warm-up: trace the train step
        time_fit(model, x, y, args.steps, callbacks())
    times = {name: [] for name in arms}
    names = list(arms)
    for repeat in range(args.repeats):
        first = repeat % len(names)
        for name in names[first:] + names[:first]:  # rotate: no arm always first
            model, callbacks = arms[name]
            times[name].append(time_fit(model, x, y, args.steps, callbacks()))
    plain = np.array(times["plain"])
    print(f"  {args.steps} steps at batch {BATCH} per repeat, {args.repeats} repeats "
          "(arms alternate); wall time, and CPU time of the process (less sensitive to other "
          "processes on a shared machine)")
    ratios = {}
    for name, t in times.items():
        t = np.array(t)
        ratios[name] = [t[:, k].min() / plain[:, k].min() for k in (0, 1)] + [
            np.median(t[:, k]) / np.median(plain[:, k]) for k in (0, 1)]
        print(f"  {name:<20} wall min {t[:, 0].min():6.2f} s  median {np.median(t[:, 0]):6.2f} s"
              f" | CPU min {t[:, 1].min():6.2f} s  median {np.median(t[:, 1]):6.2f} s"
              f"  / plain: wall {ratios[name][0]:.3f}x / {ratios[name][2]:.3f}x,"
              f" CPU {ratios[name][1]:.3f}x / {ratios[name][3]:.3f}x")
    report = vot.sparsity_report(ours)
    print(f"  ours ended at {report.layers[0].pattern} with {report.violations} violations")
    return ratios["ours"]


def run_latency(args):
    keras.utils.set_random_seed(0)
    dense = mobilenet_1x1()
    sparse = vot.SparsePruner(dense).sparse_model(0.75, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense_lite = tf.lite.TFLiteConverter.from_keras_model(dense).convert()
        plain = vot.sparsity.plain_model(sparse)
        converter = tf.lite.TFLiteConverter.from_keras_model(plain)
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        sparse_lite = converter.convert()
    # Interleaved rounds of the library's timer; each timing lasts >= 50 ms.
    seconds = latency_timer.time_rounds(
        [latency_timer.TfliteCall(dense, 1, threads=1, content=content)
         for content in (dense_lite, sparse_lite)], args.latency_repeats, min_seconds=0.05)
    times = {"dense": list(seconds[0] * 1000), "4:16": list(seconds[1] * 1000)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse_ops = sum(op["op_name"] == "DENSIFY" for op in tf.lite.Interpreter(
            model_content=sparse_lite)._get_ops_details())
    print(f"  {dense.name}, 96x96, {sparse_ops} sparse-encoded 1x1 kernels at 4:16, XNNPACK "
          "(default delegate), 1 thread")
    for name, t in times.items():
        print(f"  {name:<6} min {min(t):7.3f} ms  median {np.median(t):7.3f} ms")
    ratio = (min(times["dense"]) / min(times["4:16"]),
             np.median(times["dense"]) / np.median(times["4:16"]))
    avx = "avx" in divisibility.cpu_flags()
    print(f"  speedup dense / 4:16: min {ratio[0]:.2f}x  median {ratio[1]:.2f}x; this CPU "
          f"{'has' if avx else 'has no'} AVX"
          + (" (XNNPACK disables its sparse kernels on x86 CPUs with AVX)" if avx else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small data and few repeats, to check the script runs")
    parser.add_argument("--epochs", type=int, default=None, help="dense training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=None)
    parser.add_argument("--finetune-lr", type=float, default=5e-4)
    parser.add_argument("--steps", type=int, default=None, help="steps per timed fit")
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per arm")
    parser.add_argument("--latency-repeats", type=int, default=None)
    parser.add_argument("--train-samples", type=int, default=None,
                        help="use only the first N training images")
    parser.add_argument("--parts", default="accuracy,latency,fit",
                        help="comma-separated subset of accuracy (with model sizes), latency "
                             "and fit (overhead); the timed parts want a quiet machine, the "
                             "accuracy part does not")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts or not parts <= {"accuracy", "latency", "fit"}:
        parser.error(f"--parts takes accuracy, latency and fit. Received: {args.parts!r}")
    defaults = (dict(epochs=1, finetune_epochs=1, steps=10, repeats=3, latency_repeats=3)
                if args.quick else
                dict(epochs=10, finetune_epochs=3, steps=40, repeats=7, latency_repeats=15))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    name, data = datasets.load_example_dataset()
    (x_train, y_train), (x_test, y_test) = data
    if args.quick:
        args.train_samples = args.train_samples or 4000
        x_test, y_test = x_test[:2000], y_test[:2000]
    if args.train_samples:
        x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]
    data = (x_train, y_train), (x_test, y_test)
    workdir = tempfile.mkdtemp()
    try:
        if "accuracy" in parts:
            print(f"Accuracy: ResNet-20 on {name} ({len(data[0][0])} train, "
                  f"{len(data[1][0])} test)", flush=True)
            dense, models, results = run_accuracy(data, args, workdir)
            print("Model size", flush=True)
            run_sizes(dense, models, data[0][0][:200], workdir)
        if "latency" in parts:
            print("Latency", flush=True)
            run_latency(args)
        if "fit" in parts:
            print("Fit overhead: ResNet-20", flush=True)
            overhead = run_fit_overhead(data, args)
    finally:
        shutil.rmtree(workdir)
    if "fit" not in parts:
        if "accuracy" in parts:
            base = results["dense (same budget)"][0]
            print(f"2:4 accuracy minus dense: {100 * (results['ours 2:4'][0] - base):+.2f} pp "
                  "(target >= -0.3)")
        return
    print(f"fit overhead, ours / plain: wall min {overhead[0]:.3f}x, median {overhead[2]:.3f}x;"
          f" CPU min {overhead[1]:.3f}x, median {overhead[3]:.3f}x (target <= 1.05)")


if __name__ == "__main__":
    main()
