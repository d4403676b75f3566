"""Neutral graph IR: what every adapter produces and everything else reads.

Nothing in this module knows about a Keras flavour. A `Graph` is a list of
`Node`s in topological order, connected through `TensorInfo`s. A node is one
call of one layer; a layer called twice (shared weights) gives two nodes with
the same `layer_path`.
"""

import dataclasses
import hashlib
import json
from typing import Any, Dict, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One symbolic tensor of the graph.

    Attributes:
      id: Index of the tensor in `Graph.tensors`.
      shape: Static shape, batch dimension first (`None` where unknown).
      dtype: Dtype name, e.g. `"float32"`.
    """

    id: int
    shape: Tuple[Optional[int], ...]
    dtype: str

    @property
    def channels(self):
        """Size of the channel (last) axis, or `None` for rank-1 tensors."""
        return self.shape[-1] if len(self.shape) > 1 else None

    def __repr__(self):
        return f"TensorInfo(id={self.id}, shape={self.shape})"


@dataclasses.dataclass(frozen=True)
class WeightInfo:
    """One variable of a layer: its short name (`kernel`, `gamma`...), shape, trainability."""

    name: str
    shape: Tuple[int, ...]
    trainable: bool = True


@dataclasses.dataclass(frozen=True)
class Node:
    """One call of one layer.

    Attributes:
      name: Unique node name. It is the layer path, plus `@k` for the k-th
        call (k >= 1) of a shared layer.
      layer_path: Path of the layer object, `outer/inner/layer` for layers of
        nested models. Nodes of a shared layer share it.
      layer_class: The layer's Python class, used for registry look-ups
        through its MRO.
      config: The layer's config dict.
      inputs: Ids of the tensors the call consumes, in call order.
      outputs: Ids of the tensors the call produces.
      weights: The layer's variables, in the layer's `weights` order.
      input_shapes: Shapes of the input tensors (batch axis first).
      output_shapes: Shapes of the output tensors.
      call_args: Non-tensor call arguments (for op layers such as
        `tf.concat`), with tensors replaced by `TensorRef`.
      call_kwargs: Keyword call arguments, likewise.
      wrapped: For a wrapper that applies another layer at every time step
        (`TimeDistributed`), that layer as a node of its own: its class,
        config and weights, and shapes without the time axis. `None` for
        other layers.
    """

    name: str
    layer_path: str
    layer_class: type
    config: Dict[str, Any]
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    weights: Tuple[WeightInfo, ...] = ()
    input_shapes: Tuple[Tuple[Optional[int], ...], ...] = ()
    output_shapes: Tuple[Tuple[Optional[int], ...], ...] = ()
    call_args: Tuple[Any, ...] = ()
    call_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    wrapped: Optional["Node"] = None

    @property
    def class_name(self):
        return self.layer_class.__name__

    @property
    def input_rank(self):
        """Rank of the first input, batch axis included (0 if no input)."""
        return len(self.input_shapes[0]) if self.input_shapes else 0

    def __repr__(self):
        return (f"Node({self.name!r}, {self.class_name}, inputs={list(self.inputs)}, "
                f"outputs={list(self.outputs)})")


@dataclasses.dataclass(frozen=True)
class TensorRef:
    """Stands for a graph tensor inside `Node.call_args` / `Node.call_kwargs`."""

    id: int


class Graph:
    """A model as nodes and tensors, in topological order.

    Attributes:
      name: The model's name.
      nodes: Nodes in topological order.
      tensors: All tensors, indexed by id.
      inputs: Ids of the model's input tensors.
      outputs: Ids of the model's output tensors.
      output_names: Names of the layers that produce the outputs.
    """

    def __init__(self, name, nodes, tensors, inputs, outputs, output_names):
        self.name = name
        self.nodes = list(nodes)
        self.tensors = list(tensors)
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.output_names = tuple(output_names)
        self._by_name = {n.name: n for n in self.nodes}
        self._digest = None
        self._producer = {}
        self._consumers = {t.id: [] for t in self.tensors}
        for node in self.nodes:
            for t in node.outputs:
                self._producer[t] = node
            for t in node.inputs:
                self._consumers[t].append(node)

    def node(self, name):
        """Returns the node called `name`; raises `KeyError` naming close matches."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"No node named {name!r} in graph {self.name!r}.") from None

    def producer(self, tensor_id):
        """The node that produces `tensor_id`, or `None` for model inputs."""
        return self._producer.get(tensor_id)

    def consumers(self, tensor_id):
        """The nodes that read `tensor_id`."""
        return list(self._consumers[tensor_id])

    def layer_paths(self):
        """Distinct layer paths, in the order of their first call."""
        seen = {}
        for node in self.nodes:
            seen.setdefault(node.layer_path, node)
        return list(seen)

    def nodes_of_layer(self, layer_path):
        return [n for n in self.nodes if n.layer_path == layer_path]

    def digest(self):
        """A hex digest of the graph's structure (not its names or weights).

        Two models built by the same code have the same digest even when
        Keras gave their layers different automatic names (`conv2d` vs
        `conv2d_3`); any change of layer class, config, connection or shape
        changes it.
        """
        if self._digest is not None:
            return self._digest
        items = []
        for node in self.nodes:
            config = {k: v for k, v in node.config.items() if k != "name"}
            items.append([
                node.class_name, list(node.inputs), list(node.outputs),
                [list(w.shape) for w in node.weights],
                json.dumps(config, sort_keys=True, default=str),
            ])
        shapes = [[t.id, [d if d is not None else -1 for d in t.shape]] for t in self.tensors]
        payload = json.dumps([items, shapes, list(self.inputs), list(self.outputs)],
                             sort_keys=True, default=str)
        self._digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
        return self._digest

    def __repr__(self):
        return f"Graph({self.name!r}, nodes={len(self.nodes)}, tensors={len(self.tensors)})"
