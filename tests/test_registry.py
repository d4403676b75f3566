"""The layer registry as a whole: where Keras internals are used, and what every entry declares."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "vai_optimizer_tf")

# The modules graph/__init__.py names as the only ones touching Keras internals.
INTERNALS_ALLOWED = {
    "tf_keras.src": {"graph/tf_keras_adapter.py", "graph/tf_keras_rules.py"},
    "keras.src": {"graph/keras3_adapter.py", "graph/keras3_rules.py"},
}


def _imported_modules(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("internals", sorted(INTERNALS_ALLOWED))
def test_only_the_flavour_adapter_and_rules_import_its_internals(internals):
    offenders = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, PACKAGE)
            internal = [m for m in _imported_modules(path)
                        if m == internals or m.startswith(internals + ".")]
            if internal and rel not in INTERNALS_ALLOWED[internals]:
                offenders[rel] = internal
    assert not offenders, f"{internals} imported outside its adapter: {offenders}"


def test_neutral_rule_modules_import_no_keras_flavour():
    for rel in ("graph/layer_rules.py", "graph/op_rules.py", "graph/registry.py",
                "graph/ir.py", "stats/formulas.py"):
        modules = list(_imported_modules(os.path.join(PACKAGE, rel)))
        flavoured = [m for m in modules if m.split(".")[0] in ("tf_keras", "keras", "tensorflow")]
        assert not flavoured, f"{rel} imports {flavoured}"
