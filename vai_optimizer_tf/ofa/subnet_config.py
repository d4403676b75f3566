"""`SubnetConfig` and `OFASubnet`: one configuration of a supernet, and a searched one."""

import dataclasses
import json
import math
import numbers


def _check_sizes(name, mapping):
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise ValueError(f"Invalid `{name}`: expected a dict of name -> positive int. "
                         f"Received: {name}={mapping!r}")
    out = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise ValueError(f"Invalid `{name}`: keys must be names (str). Received key "
                             f"{key!r} in {name}={mapping!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"Invalid `{name}`: {key!r} maps to {value!r}, expected a "
                             f"positive int. Received: {name}={mapping!r}")
        out[key] = int(value)
    return out


class SubnetConfig:
    """One subnet of a once-for-all supernet: a width per elastic group, a kernel size per layer.

    Groups and layers that are not listed run at their full width and kernel
    size.

    Args:
      widths: Channel-group name -> active width (the first `width` channels
        of the reordered group). Defaults to none.
      kernel_sizes: Layer path -> active kernel size (the centre of the
        layer's kernel). Defaults to none.

    Example:

    ```python
    import vai_optimizer_tf as vot

    config = vot.SubnetConfig(widths={"conv1": 8}, kernel_sizes={"conv2": 3})
    same = vot.SubnetConfig.from_config(config.get_config())
    assert same == config
    ```
    """

    def __init__(self, widths=None, kernel_sizes=None):
        self.widths = _check_sizes("widths", widths)
        self.kernel_sizes = _check_sizes("kernel_sizes", kernel_sizes)

    def get_config(self):
        return {"widths": dict(self.widths), "kernel_sizes": dict(self.kernel_sizes)}

    @classmethod
    def from_config(cls, config):
        if not isinstance(config, dict):
            raise ValueError(f"Invalid `config`: expected a dict with `widths` and "
                             f"`kernel_sizes`. Received: config={config!r}")
        unknown = set(config) - {"widths", "kernel_sizes"}
        if unknown:
            raise ValueError(f"Invalid `config`: unknown keys {sorted(unknown)}; expected "
                             "`widths` and `kernel_sizes`.")
        return cls(config.get("widths"), config.get("kernel_sizes"))

    def _key(self):
        return (tuple(sorted(self.widths.items())), tuple(sorted(self.kernel_sizes.items())))

    def __eq__(self, other):
        return isinstance(other, SubnetConfig) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"SubnetConfig({json.dumps(self.get_config(), sort_keys=True)})"


@dataclasses.dataclass(frozen=True)
class OFASubnet:
    """A subnet found by `OFAPruner.search`.

    Attributes:
      config: Its `SubnetConfig` (every elastic group and kernel listed).
      flops_reduction: Analytic FLOPs reduction of its static model against
        the original model.
      score: `eval_fn` of the supernet at this configuration, after adaptive
        BN.
      target: The FLOPs-reduction target it was searched for.
    """

    config: SubnetConfig
    flops_reduction: float
    score: float
    target: float

    def get_config(self):
        return {"config": self.config.get_config(), "flops_reduction": self.flops_reduction,
                "score": self.score, "target": self.target}

    @classmethod
    def from_config(cls, config):
        for field in ("flops_reduction", "score", "target"):
            value = config.get(field)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                    not math.isfinite(value):
                raise ValueError(f"Invalid `{field}`: expected a finite number. "
                                 f"Received: {field}={value!r}")
        return cls(SubnetConfig.from_config(config.get("config")),
                   float(config["flops_reduction"]), float(config["score"]),
                   float(config["target"]))

    def __repr__(self):
        return (f"OFASubnet(target={self.target:.2f}, flops_reduction="
                f"{self.flops_reduction:.4f}, score={self.score:.4f})")
