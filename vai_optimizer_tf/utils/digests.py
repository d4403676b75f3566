"""Digests of weight values, for cache keys."""

import hashlib

import numpy as np


def weights_digest(weights):
    """A hex digest of weight values (layer path -> list of arrays).

    Two sets of weights share a digest only if every layer path, shape and
    value is the same; the order of the mapping does not matter.
    """
    digest = hashlib.sha256()
    for path, values in sorted(weights.items()):
        digest.update(path.encode())
        for value in values:
            value = np.ascontiguousarray(value)
            digest.update(str(value.shape).encode())
            digest.update(value.tobytes())
    return digest.hexdigest()[:16]
