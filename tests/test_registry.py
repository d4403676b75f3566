"""The layer registry as a whole: where Keras internals are used, and what every entry declares."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "vai_optimizer_tf")

# The modules graph/__init__.py names as the only ones touching tf_keras internals.
INTERNALS_ALLOWED = {"graph/tf_keras_adapter.py", "graph/tf_keras_rules.py"}


def _imported_modules(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_only_the_tf_keras_adapter_and_rules_import_tf_keras_internals():
    offenders = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, PACKAGE)
            internal = [m for m in _imported_modules(path) if m.startswith("tf_keras.src")]
            if internal and rel not in INTERNALS_ALLOWED:
                offenders[rel] = internal
    assert not offenders, f"tf_keras internals imported outside the adapter: {offenders}"


def test_neutral_rule_modules_import_no_keras_flavour():
    for rel in ("graph/layer_rules.py", "graph/op_rules.py", "graph/registry.py",
                "graph/ir.py", "stats/formulas.py"):
        modules = list(_imported_modules(os.path.join(PACKAGE, rel)))
        flavoured = [m for m in modules if m.split(".")[0] in ("tf_keras", "keras", "tensorflow")]
        assert not flavoured, f"{rel} imports {flavoured}"
