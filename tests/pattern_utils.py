"""Helpers of the pattern tests: prune a tiny model and check slim == sparse, find groups."""

from tests import model_utils

TOLERANCE = 1e-5


def prune_and_compare(model, sparsity=0.5, expect_smaller=True, return_sparse=False,
                      **spec_kwargs):
    """Prunes `model` uniformly and checks that slim == sparse.

    Returns:
      `(runner, spec, slim)`, or `(runner, spec, sparse, slim)` with
      `return_sparse`.
    """
    model_utils.randomize_weights(model)
    runner, spec, sparse, slim = model_utils.prune_checked(model, sparsity, TOLERANCE,
                                                           **spec_kwargs)
    if expect_smaller:
        assert slim.count_params() < model.count_params()
    else:
        assert slim.count_params() == model.count_params()
    return (runner, spec, sparse, slim) if return_sparse else (runner, spec, slim)


def group_of(runner, producer):
    """The one channel group that `producer` writes."""
    matches = [g for g in runner.groups if producer in g.producers]
    assert len(matches) == 1, [g.describe() for g in runner.groups]
    return matches[0]


def group_named(runner, name):
    """The channel group called `name` (its first producer, or its origin)."""
    matches = [g for g in runner.groups if g.name == name]
    assert len(matches) == 1, [g.describe() for g in runner.groups]
    return matches[0]


def assert_blocked_by(group, *words):
    """`group` is not prunable and one of its reasons mentions every word."""
    assert not group.prunable, group.describe()
    assert any(all(w in reason for w in words) for reason in group.reasons), group.describe()
