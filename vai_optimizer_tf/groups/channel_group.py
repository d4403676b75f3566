"""`ChannelGroup`: a set of channels that must shrink together."""

import dataclasses
from typing import Tuple


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Channels coupled across layers, pruned as one.

    Attributes:
      id: Internal integer id, stable for one graph.
      index: Position of the group in graph order. Models built by the same
        code number their groups alike, whatever Keras named their layers.
      name: Readable name: the first producer's layer path (or the tensor's
        origin for groups without producers).
      width: Number of channels.
      producers: Layers whose output channels are this group (Conv, Dense).
      consumers: Layers whose input channels are this group and whose weights
        are sliced on their input axis.
      members: Channel-preserving layers with per-channel weights that carry
        this group (BatchNormalization, DepthwiseConv2D, PReLU).
      reasons: Why the group cannot be pruned; empty when it can.
    """

    id: int
    index: int
    name: str
    width: int
    producers: Tuple[str, ...]
    consumers: Tuple[str, ...]
    members: Tuple[str, ...]
    reasons: Tuple[str, ...] = ()

    @property
    def prunable(self):
        return not self.reasons

    def describe(self):
        """A multi-line, human-readable account of the group."""
        lines = [f"group {self.name!r}: {self.width} channels, "
                 + ("prunable" if self.prunable else "not prunable")]
        lines.append(f"  producers: {', '.join(self.producers) or '-'}")
        lines.append(f"  consumers: {', '.join(self.consumers) or '-'}")
        if self.members:
            lines.append(f"  carried by: {', '.join(self.members)}")
        for reason in self.reasons:
            lines.append(f"  why not: {reason}")
        return "\n".join(lines)

    def __repr__(self):
        state = "prunable" if self.prunable else f"blocked: {self.reasons[0]}"
        return (f"ChannelGroup({self.name!r}, width={self.width}, "
                f"producers={len(self.producers)}, consumers={len(self.consumers)}, {state})")
