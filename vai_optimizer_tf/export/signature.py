"""`ModelSignature`: the named inputs and outputs every export format shares.

Every format names its tensors after the Keras model: each input after its
`InputLayer` (`model.input_names`), each output after the layer that produces
it (`model.output_names`). So the TF Serving signature keys, the frozen
graph's placeholder and output node names and the TFLite signature all read
`image` and `logits` for a model whose input layer is `image` and whose last
layer is `logits`.
"""

import dataclasses
import numbers
from typing import List, Optional, Tuple

import tensorflow as tf

from vai_optimizer_tf import errors
from vai_optimizer_tf.graph import adapters


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One named input or output of an exported model.

    Attributes:
      name: The name (signature key, node name).
      shape: The shape; `None` marks a dimension of any size.
      dtype: The dtype name, e.g. `"float32"`.
    """

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: str

    def describe(self):
        """`"image: float32[?,16,16,3]"`."""
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"

    def shape_flag(self):
        """The shape as TF1 tools write it in flags: `"?,16,16,3"`."""
        return ",".join("?" if d is None else str(d) for d in self.shape)


@dataclasses.dataclass(frozen=True)
class ModelSignature:
    """The named inputs and outputs of an exported model.

    Attributes:
      inputs: `TensorInfo` per model input, in `model.inputs` order.
      outputs: `TensorInfo` per model output, in `model.outputs` order.
    """

    inputs: Tuple[TensorInfo, ...]
    outputs: Tuple[TensorInfo, ...]

    @property
    def input_names(self) -> List[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [t.name for t in self.outputs]

    def describe(self):
        """One line per input and output."""
        lines = [f"input  {t.describe()}" for t in self.inputs]
        lines += [f"output {t.describe()}" for t in self.outputs]
        return "\n".join(lines)


def check_model(model):
    """Raises `UnsupportedModelError` unless `model` is a built tf_keras or Keras 3 model.

    Returns:
      The model's flavour, `"tf_keras"` or `"keras3"`.
    """
    flavour = adapters.flavour_of(model)
    if flavour is None or not hasattr(model, "inputs"):
        raise errors.UnsupportedModelError(
            f"Invalid `model`: expected a tf_keras or Keras 3 Model, such as the slim model of "
            f"runner.get_slim_model(). Received: model={type(model).__name__}")
    if not model.built or not getattr(model, "inputs", None):
        raise errors.UnsupportedModelError(
            f"Invalid `model`: model {model.name!r} has no defined inputs. Export a Functional "
            "or built Sequential model (subclassed models are not supported).")
    return flavour


def check_batch_size(batch_size):
    """`None` (any batch size) or a positive int."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"Invalid `batch_size`: expected None (any batch size) or a positive "
                         f"integer. Received: batch_size={batch_size!r}")
    return int(batch_size)


def _unique(names):
    seen = set()
    result = []
    for name in names:
        candidate, k = name, 1
        while candidate in seen:
            candidate, k = f"{name}_{k}", k + 1
        seen.add(candidate)
        result.append(candidate)
    return result


def input_specs(model, batch_size=None, input_signature=None):
    """Named `tf.TensorSpec`s for the model's inputs.

    Args:
      model: A built tf_keras or Keras 3 model.
      batch_size: `None` for a batch-size-polymorphic signature, or a fixed
        batch size. Defaults to `None`.
      input_signature: Optional `tf.TensorSpec` (or list, one per input)
        filling in dimensions the model leaves undefined. Defaults to the
        model's own input shapes.

    Returns:
      A list of `tf.TensorSpec`, one per model input, named after the input.

    Raises:
      ValueError: for a bad `batch_size` or an `input_signature` that does not
        fit the model.
    """
    check_model(model)
    batch_size = check_batch_size(batch_size)
    names = _unique(adapters.io_names(model)[0])
    given = tf.nest.flatten(input_signature) if input_signature is not None else None
    if given is not None and len(given) != len(model.inputs):
        raise ValueError(
            f"Invalid `input_signature`: expected {len(model.inputs)} spec(s), one per model "
            f"input. Received: input_signature={input_signature!r}")
    specs = []
    for i, (tensor, name) in enumerate(zip(model.inputs, names)):
        shape = [None if d is None else int(d) for d in tensor.shape]
        if given is not None:
            wanted = tf.TensorShape(getattr(given[i], "shape", given[i])).as_list()
            if len(wanted) != len(shape) or any(
                    m is not None and w is not None and m != w
                    for m, w in zip(shape[1:], wanted[1:])):
                raise ValueError(
                    f"Invalid `input_signature`: shape {tuple(wanted)} does not fit model input "
                    f"{name!r} of shape {tuple(shape)}. Received: "
                    f"input_signature={input_signature!r}")
            shape = [shape[0]] + [m if m is not None else w for m, w in zip(shape[1:], wanted[1:])]
        shape[0] = batch_size
        specs.append(tf.TensorSpec(shape, tensor.dtype, name=name))
    return specs


def output_names(model):
    """The model's output names, made unique."""
    return _unique(adapters.io_names(model)[1])


def serving_function(model, specs):
    """A `tf.function` calling `model` in inference mode, outputs keyed by name.

    Args:
      model: A built tf_keras or Keras 3 model.
      specs: Its named input specs, from `input_specs`.

    Returns:
      A `tf.function` with `specs` as input signature that returns a dict
      output name -> tensor.
    """
    names = output_names(model)
    single = len(specs) == 1

    def serve(*args):
        outputs = model(args[0] if single else list(args), training=False)
        return dict(zip(names, tf.nest.flatten(outputs)))

    return tf.function(serve, input_signature=specs)


def signature_of(specs, concrete_function, names):
    """The `ModelSignature` of a concrete serving function.

    Args:
      specs: The named input specs the function was traced with.
      concrete_function: `serving_function(...).get_concrete_function()`.
      names: The output names in model order, from `output_names`.

    Returns:
      A `ModelSignature`; output shapes are the traced ones.
    """
    inputs = tuple(TensorInfo(s.name, tuple(s.shape.as_list()), s.dtype.name) for s in specs)
    traced = concrete_function.structured_outputs
    outputs = tuple(TensorInfo(name, tuple(traced[name].shape.as_list()), traced[name].dtype.name)
                    for name in names)
    return ModelSignature(inputs, outputs)
