"""Timing models where the code runs: TensorFlow on CPU, or the TFLite interpreter.

Every measurement is interleaved: each round times every model once, in a
shuffled order, and a model's time is the median over rounds, so slow drifts
of the machine's load touch every model alike. One timing averages enough
calls to last at least `min_seconds`.

* `"tf"`: a `tf.function` of `model(x, training=False)` (TensorFlow's CPU
  kernels, oneDNN), with TensorFlow's own thread pools.
* `"tflite"`: the float32 TFLite conversion in the interpreter with its
  default XNNPACK delegate, `num_threads` = the CPU count.
"""

import os
import random
import time
import warnings

import numpy as np

DEVICES = ("tf", "tflite")
_WARMUP_CALLS = 2


def check_device(device):
    """Checks `device` and returns it.

    Raises:
      ValueError: for anything but `"tf"` or `"tflite"`.
    """
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"Invalid `device`: expected one of {DEVICES}. Received: "
                         f"device={device!r}")
    return device


def default_threads():
    """Threads the TFLite interpreter runs with: the CPU count."""
    return os.cpu_count() or 1


def _inputs(model, batch_size, seed=0):
    rng = np.random.RandomState(seed)
    arrays = []
    for tensor in model.inputs:
        shape = [batch_size] + [d if d is not None else 1 for d in tensor.shape[1:]]
        arrays.append(rng.rand(*shape).astype(tensor.dtype.name if hasattr(tensor.dtype, "name")
                                              else "float32"))
    return arrays


class TfCall:
    """One compiled inference call of a tf_keras model at a fixed batch size."""

    def __init__(self, model, batch_size):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        arrays = [tf.constant(a) for a in _inputs(model, batch_size)]
        self._x = arrays if len(arrays) > 1 else arrays[0]
        self._fn = tf.function(lambda x: model(x, training=False), jit_compile=False)
        self.inner = 1

    def once(self):
        out = self._fn(self._x)
        for tensor in out if isinstance(out, (list, tuple)) else [out]:
            tensor.numpy()


class NullTfCall(TfCall):
    """The fixed cost of calling a `tf.function` at all (one identity op), to subtract."""

    def __init__(self, model, batch_size):  # pylint: disable=super-init-not-called
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        arrays = [tf.constant(a) for a in _inputs(model, batch_size)]
        self._x = arrays if len(arrays) > 1 else arrays[0]
        self._fn = tf.function(lambda x: tf.nest.map_structure(tf.identity, x))
        self.inner = 1


class TfliteCall:
    """One `invoke()` of the float TFLite conversion of a model, at a fixed batch size.

    `content`, when given, is that conversion already made (one conversion
    can serve several batch sizes).
    """

    def __init__(self, model, batch_size, threads=None, content=None):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        from vai_optimizer_tf.export.tflite import convert_to_tflite  # pylint: disable=import-outside-toplevel
        if content is None:
            content = convert_to_tflite(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self.interpreter = tf.lite.Interpreter(model_content=content,
                                                   num_threads=threads or default_threads())
        details = self.interpreter.get_input_details()
        arrays = _inputs(model, batch_size)
        by_shape = {}
        for detail in details:
            shape = [batch_size] + list(detail["shape"][1:])
            if list(detail["shape"]) != shape:
                self.interpreter.resize_tensor_input(detail["index"], shape)
            by_shape[detail["index"]] = shape
        self.interpreter.allocate_tensors()
        for detail, array in zip(details, arrays):
            self.interpreter.set_tensor(detail["index"],
                                        array.reshape(by_shape[detail["index"]]))
        self.inner = 1

    def once(self):
        self.interpreter.invoke()


def make_call(model, device, batch_size, threads=None):
    """A timed call of `model` on `device` at `batch_size` (see the module docstring)."""
    if check_device(device) == "tf":
        return TfCall(model, batch_size)
    return TfliteCall(model, batch_size, threads)


def _calibrate(call, min_seconds):
    for _ in range(_WARMUP_CALLS):
        call.once()
    start = time.perf_counter()
    call.once()
    single = time.perf_counter() - start
    call.inner = max(1, int(round(min_seconds / max(single, 1e-7))))


def _measure(call):
    start = time.perf_counter()
    for _ in range(call.inner):
        call.once()
    return (time.perf_counter() - start) / call.inner


def time_rounds(calls, repeats=5, min_seconds=0.002, seed=0):
    """Seconds per call of each of `calls` in each of `repeats` interleaved rounds.

    Each round times every call once, in a shuffled order, so ratios taken
    within a round compare calls under the same load.

    Args:
      calls: Objects with `once()` (see `make_call`).
      repeats: Rounds. Defaults to `5`.
      min_seconds: One timing repeats a call until it lasts this long.
        Defaults to `0.002`.
      seed: Seed of the shuffled order. Defaults to `0`.

    Returns:
      A `(len(calls), repeats)` numpy array of seconds per call.
    """
    for call in calls:
        _calibrate(call, min_seconds)
    samples = np.zeros((len(calls), repeats))
    order = list(range(len(calls)))
    rng = random.Random(seed)
    for round_ in range(repeats):
        rng.shuffle(order)
        for i in order:
            samples[i, round_] = _measure(calls[i])
    return samples


def time_calls(calls, repeats=5, min_seconds=0.002, seed=0):
    """Median seconds per call of each of `calls`, timed in interleaved rounds (`time_rounds`).

    Returns:
      A list of medians, in the order of `calls`.
    """
    return [float(m) for m in np.median(time_rounds(calls, repeats, min_seconds, seed), axis=1)]


def time_ratio(base_call, call, repeats=9, min_seconds=0.05, seed=0):
    """Measured latency of `call` relative to `base_call`, side by side.

    Each round times both, in a shuffled order. Other work on the machine
    only ever adds time, so each model's latency is its fastest round, and
    the ratio is that of the two fastest rounds.

    Returns:
      `(ratio, base_seconds, seconds)`, the last two the fastest rounds.
    """
    for c in (base_call, call):
        _calibrate(c, min_seconds)
    rng = random.Random(seed)
    base, mine = [], []
    for _ in range(repeats):
        pair = [base_call, call]
        rng.shuffle(pair)
        seconds = {id(c): _measure(c) for c in pair}
        base.append(seconds[id(base_call)])
        mine.append(seconds[id(call)])
    return min(mine) / min(base), min(base), min(mine)


class UnitBenchmark:
    """Times latency units at given widths: the default measurement of a `LatencyTable`.

    Each unit is built on its own (`build_unit_model`) at every requested
    width pair, and all of them are timed in interleaved rounds. On `"tf"`,
    the time of an identity `tf.function` on the same input is timed in the
    same rounds and subtracted: it is the fixed cost of a call, which the
    whole model pays once, not once per layer.

    Args:
      deps: The `DependencyGraph` the units come from.
      device: `"tf"` or `"tflite"`.
      batch_size: The batch size.
      repeats: Rounds per unit. Defaults to `5`.
      threads: TFLite interpreter threads. Defaults to the CPU count.
    """

    def __init__(self, deps, device, batch_size, repeats=5, threads=None):
        self.deps = deps
        self.device = check_device(device)
        self.batch_size = int(batch_size)
        self.repeats = int(repeats)
        self.threads = threads

    def __call__(self, unit, points):
        """Seconds of `unit` at each `(in_width, out_width)` of `points`."""
        from vai_optimizer_tf.planning.latency_units import build_unit_model  # pylint: disable=import-outside-toplevel
        models = [build_unit_model(self.deps, unit, a, b, self.batch_size) for a, b in points]
        calls = [make_call(m, self.device, self.batch_size, self.threads) for m in models]
        null = NullTfCall(models[0], self.batch_size) if self.device == "tf" else None
        seconds = time_calls(calls + ([null] if null is not None else []), self.repeats)
        offset = seconds.pop() if null is not None else 0.0
        return [max(s - offset, 0.0) for s in seconds]
