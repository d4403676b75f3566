"""Channel layouts: which group channel sits at each position of a tensor's
channel axis.

A tensor made by a conv holds one group's channels in order (`Base`). A
concatenation holds several groups side by side (`Concat`). A depthwise conv
with multiplier m repeats each channel m times, and a Flatten repeats the whole
channel vector once per spatial position (`Tile`). From a layout we derive,
for any choice of kept channels per group, the kept positions of the tensor,
which is what slicing a consumer's weights needs.
"""

import numpy as np


class Layout:
    """Base class of channel layouts. Subclasses are small immutable values."""

    def index_map(self, find):
        """Returns `(group_ids, channels)`, two int arrays, one entry per position.

        Args:
          find: Maps a raw channel-space id to its group id (union-find root).
        """
        raise NotImplementedError

    def spaces(self):
        """The raw channel-space ids this layout refers to."""
        raise NotImplementedError

    @property
    def width(self):
        """Number of positions on the channel axis."""
        raise NotImplementedError


class Base(Layout):
    """All channels of one channel space, in order."""

    def __init__(self, space, width):
        self.space = space
        self.size = width

    def index_map(self, find):
        return (np.full(self.size, find(self.space), dtype=np.int64),
                np.arange(self.size, dtype=np.int64))

    def spaces(self):
        return {self.space}

    @property
    def width(self):
        return self.size

    def __repr__(self):
        return f"Base({self.space}, {self.size})"


class Concat(Layout):
    """Layouts placed one after another on the channel axis."""

    def __init__(self, parts):
        self.parts = tuple(parts)

    def index_map(self, find):
        maps = [p.index_map(find) for p in self.parts]
        return (np.concatenate([m[0] for m in maps]), np.concatenate([m[1] for m in maps]))

    def spaces(self):
        return set().union(*(p.spaces() for p in self.parts))

    @property
    def width(self):
        return sum(p.width for p in self.parts)

    def __repr__(self):
        return f"Concat({list(self.parts)})"


class Tile(Layout):
    """A layout repeated: `outer` times as a block, each position `inner` times.

    Position `o * (W * inner) + c * inner + i` holds position `c` of `inner_layout`.
    """

    def __init__(self, layout, outer=1, inner=1):
        self.layout = layout
        self.outer = int(outer)
        self.inner = int(inner)

    def index_map(self, find):
        gids, chans = self.layout.index_map(find)
        gids = np.tile(np.repeat(gids, self.inner), self.outer)
        chans = np.tile(np.repeat(chans, self.inner), self.outer)
        return gids, chans

    def spaces(self):
        return self.layout.spaces()

    @property
    def width(self):
        return self.outer * self.inner * self.layout.width

    def __repr__(self):
        return f"Tile({self.layout!r}, outer={self.outer}, inner={self.inner})"


def pair_spaces(a, b):
    """Pairs the channel spaces of two layouts that must hold the same channels.

    Returns a list of `(space_a, space_b)` to unite, or `None` when the two
    layouts have different structure (e.g. a concatenation added to a plain
    conv output), in which case their channels cannot be pruned consistently.
    """
    if isinstance(a, Base) and isinstance(b, Base):
        return [(a.space, b.space)] if a.size == b.size else None
    if isinstance(a, Concat) and isinstance(b, Concat) and len(a.parts) == len(b.parts):
        pairs = []
        for pa, pb in zip(a.parts, b.parts):
            sub = pair_spaces(pa, pb)
            if sub is None:
                return None
            pairs.extend(sub)
        return pairs
    if (isinstance(a, Tile) and isinstance(b, Tile) and a.outer == b.outer
            and a.inner == b.inner):
        return pair_spaces(a.layout, b.layout)
    return None


def kept_positions(layout, find, kept_by_group):
    """Positions of `layout` whose channel is kept.

    Args:
      layout: A `Layout`.
      find: Raw space id -> group id.
      kept_by_group: Group id -> sorted int array of kept channels. Groups not
        listed keep all their channels.

    Returns:
      A sorted int64 array of kept positions.
    """
    gids, chans = layout.index_map(find)
    keep = np.ones(len(gids), dtype=bool)
    for gid in np.unique(gids):
        kept = kept_by_group.get(int(gid))
        if kept is None:
            continue
        sel = gids == gid
        keep[sel] = np.isin(chans[sel], kept)
    return np.nonzero(keep)[0]


def permuted_positions(layout, find, order_by_group):
    """Positions of `layout` in the order that reorders its groups' channels.

    A group's channels are reordered by `order_by_group[gid]`: new channel j
    is old channel `order[j]`. Position p of the reordered tensor then holds
    what position `permuted_positions(...)[p]` of the original tensor holds,
    so `np.take(weight, positions, axis)` reorders a weight axis laid out as
    `layout`. Concatenations and tilings keep their structure: only the
    channels inside each group move.

    Args:
      layout: A `Layout`.
      find: Raw space id -> group id.
      order_by_group: Group id -> permutation of `range(width)`. Groups not
        listed keep their order.

    Returns:
      An int64 array, a permutation of `range(layout.width)`.
    """
    if isinstance(layout, Base):
        order = order_by_group.get(find(layout.space))
        return (np.arange(layout.size, dtype=np.int64) if order is None
                else np.asarray(order, dtype=np.int64))
    if isinstance(layout, Concat):
        parts, offset = [], 0
        for part in layout.parts:
            parts.append(permuted_positions(part, find, order_by_group) + offset)
            offset += part.width
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if isinstance(layout, Tile):
        inner = permuted_positions(layout.layout, find, order_by_group)
        width = layout.layout.width
        one_block = (inner[:, None] * layout.inner
                     + np.arange(layout.inner, dtype=np.int64)[None, :]).reshape(-1)
        block = width * layout.inner
        return (np.arange(layout.outer, dtype=np.int64)[:, None] * block
                + one_block[None, :]).reshape(-1)
    raise TypeError(f"Unknown layout {layout!r}")
