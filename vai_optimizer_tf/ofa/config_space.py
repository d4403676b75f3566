"""`ConfigSpace`: the elastic widths and kernel sizes of a supernet, and how to sample them.

A configuration is a *gene* per elastic group (its width) and per
elastic-kernel layer (its kernel size), each an index into that gene's
sorted choices. The space draws random configurations, the largest and the
smallest, mutates and crosses genes for the evolutionary search, checks
user-given `SubnetConfig`s, and gives the choice tables a training step
samples from in-graph.
"""

import dataclasses
from typing import Dict, Tuple

import numpy as np

from vai_optimizer_tf.ofa.subnet_config import SubnetConfig


@dataclasses.dataclass(frozen=True)
class ElasticGroup:
    """A channel group whose width is elastic.

    Attributes:
      index: The group's index in graph order.
      name: The group's name.
      width: Its full width.
      choices: Its allowed widths, ascending (the last is `width`).
    """

    index: int
    name: str
    width: int
    choices: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ElasticKernel:
    """A convolution whose kernel size is elastic.

    Attributes:
      path: The layer's path.
      size: Its full kernel size (square, odd).
      choices: Its allowed kernel sizes, ascending (the last is `size`).
    """

    path: str
    size: int
    choices: Tuple[int, ...]


class ConfigSpace:
    """The configurations of a supernet.

    Args:
      groups: The `ElasticGroup`s, in graph order.
      kernels: The `ElasticKernel`s, in graph order.
      fixed: Group name -> why its width is not elastic, for the groups of
        the model that are not in `groups`. Defaults to none.
      fixed_kernels: Layer path -> why its kernel size is not elastic, for
        convolutions not in `kernels`. Defaults to none.
    """

    def __init__(self, groups, kernels, fixed=None, fixed_kernels=None):
        self.groups = list(groups)
        self.kernels = list(kernels)
        self.fixed: Dict[str, str] = dict(fixed or {})
        self.fixed_kernels: Dict[str, str] = dict(fixed_kernels or {})
        self._group_index = {g.name: i for i, g in enumerate(self.groups)}
        self._kernel_index = {k.path: i for i, k in enumerate(self.kernels)}

    # Genes ---------------------------------------------------------------------------

    @property
    def genes(self):
        """The choices of every gene: groups first, then kernels."""
        return [g.choices for g in self.groups] + [k.choices for k in self.kernels]

    def size(self):
        """Number of configurations."""
        return int(np.prod([len(c) for c in self.genes], dtype=np.float64))

    def decode(self, genes):
        """The `SubnetConfig` of a gene vector (choice indices)."""
        n = len(self.groups)
        return SubnetConfig(
            {g.name: int(g.choices[i]) for g, i in zip(self.groups, genes[:n])},
            {k.path: int(k.choices[i]) for k, i in zip(self.kernels, genes[n:])})

    def encode(self, config):
        """The gene vector of a `SubnetConfig` (checked; unlisted genes are full)."""
        config = self.check(config)
        return tuple([g.choices.index(config.widths[g.name]) for g in self.groups]
                     + [k.choices.index(config.kernel_sizes[k.path]) for k in self.kernels])

    def largest_genes(self):
        return tuple(len(c) - 1 for c in self.genes)

    def smallest_genes(self):
        return tuple(0 for _ in self.genes)

    def largest(self):
        """The largest configuration: every group at full width, every kernel full size."""
        return self.decode(self.largest_genes())

    def smallest(self):
        """The smallest configuration: every gene at its first choice."""
        return self.decode(self.smallest_genes())

    def random_genes(self, rng):
        """A gene vector with every gene uniform over its choices."""
        return tuple(int(rng.randint(len(c))) for c in self.genes)

    def mutate(self, genes, probability, rng):
        """`genes` with each gene redrawn uniformly with `probability`."""
        return tuple(int(rng.randint(len(c))) if rng.random_sample() < probability else int(g)
                     for g, c in zip(genes, self.genes))

    @staticmethod
    def crossover(a, b, rng):
        """Each gene taken from `a` or `b` with equal probability."""
        return tuple(int(x) if rng.random_sample() < 0.5 else int(y) for x, y in zip(a, b))

    # Checks and vectors ------------------------------------------------------------------

    def check(self, config):
        """`config` with every elastic gene listed; raises a clear `ValueError` otherwise.

        Accepts a `SubnetConfig`, an `OFASubnet` or a dict of `SubnetConfig`
        fields.
        """
        if hasattr(config, "config") and isinstance(config.config, SubnetConfig):
            config = config.config
        if isinstance(config, dict):
            config = SubnetConfig.from_config(config)
        if not isinstance(config, SubnetConfig):
            raise ValueError("Invalid `config`: expected a SubnetConfig, an OFASubnet or a "
                             f"dict. Received: config={config!r}")
        for name, width in config.widths.items():
            if name in self.fixed:
                raise ValueError(f"Group {name!r} has no elastic width: it "
                                 f"{self.fixed[name]}. Leave it out of `widths`.")
            if name not in self._group_index:
                raise ValueError(f"No channel group named {name!r} in the supernet. Elastic "
                                 f"groups: {[g.name for g in self.groups][:20]}")
            choices = self.groups[self._group_index[name]].choices
            if width not in choices:
                raise ValueError(f"Invalid width {width} for group {name!r}: the supernet was "
                                 f"trained at widths {list(choices)}.")
        for path, size in config.kernel_sizes.items():
            if path in self.fixed_kernels:
                raise ValueError(f"Layer {path!r} has no elastic kernel size: "
                                 f"{self.fixed_kernels[path]}. Leave it out of `kernel_sizes`.")
            if path not in self._kernel_index:
                raise ValueError(f"No elastic-kernel layer {path!r} in the supernet. Elastic "
                                 f"kernels: {[k.path for k in self.kernels][:20]}")
            choices = self.kernels[self._kernel_index[path]].choices
            if size not in choices:
                raise ValueError(f"Invalid kernel size {size} for layer {path!r}: the supernet "
                                 f"was trained with kernel sizes {list(choices)}.")
        return SubnetConfig({g.name: config.widths.get(g.name, g.width) for g in self.groups},
                            {k.path: config.kernel_sizes.get(k.path, k.size)
                             for k in self.kernels})

    def vectors(self, config):
        """`(widths, kernel sizes)` lists in gene order, for a checked `config`."""
        config = self.check(config)
        return ([config.widths[g.name] for g in self.groups],
                [config.kernel_sizes[k.path] for k in self.kernels])

    def choice_tables(self):
        """Padded choice tables and counts, for sampling in a training step.

        Returns:
          `(width_table, width_counts, kernel_table, kernel_counts)`: int32
          arrays of shapes `[G, C]`, `[G]`, `[L, K]`, `[L]` (rows padded with
          their last choice).
        """
        def table(choice_lists):
            width = max([len(c) for c in choice_lists] + [1])
            rows = [list(c) + [c[-1]] * (width - len(c)) for c in choice_lists]
            return (np.array(rows, np.int32).reshape(len(choice_lists), width),
                    np.array([len(c) for c in choice_lists], np.int32))
        return (*table([g.choices for g in self.groups]),
                *table([k.choices for k in self.kernels]))

    # Serialization -------------------------------------------------------------------------

    def get_config(self):
        return {"groups": [dict(dataclasses.asdict(g), choices=list(g.choices))
                           for g in self.groups],
                "kernels": [dict(dataclasses.asdict(k), choices=list(k.choices))
                            for k in self.kernels],
                "fixed": dict(self.fixed), "fixed_kernels": dict(self.fixed_kernels)}

    @classmethod
    def from_config(cls, config):
        return cls([ElasticGroup(g["index"], g["name"], g["width"], tuple(g["choices"]))
                    for g in config["groups"]],
                   [ElasticKernel(k["path"], k["size"], tuple(k["choices"]))
                    for k in config["kernels"]],
                   config.get("fixed"), config.get("fixed_kernels"))

    def describe(self):
        """A readable account: every elastic group and kernel with its choices."""
        lines = [f"{len(self.groups)} elastic groups, {len(self.kernels)} elastic kernels, "
                 f"{self.size():,} configurations"]
        for g in self.groups:
            lines.append(f"  group {g.name!r}: widths {list(g.choices)}")
        for k in self.kernels:
            lines.append(f"  layer {k.path!r}: kernel sizes {list(k.choices)}")
        for name, why in self.fixed.items():
            lines.append(f"  group {name!r}: fixed, {why}")
        return "\n".join(lines)

    def __repr__(self):
        return f"ConfigSpace(groups={len(self.groups)}, kernels={len(self.kernels)})"
