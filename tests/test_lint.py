"""The code has no undefined names, redefinitions or other errors pyflakes finds.

Unused imports are allowed: some modules are imported for their side effects
(registering layer rules, quieting TensorFlow's logs).
"""

import os

import pytest
from pyflakes import api, messages, reporter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ("vai_optimizer_tf", "tests", "benchmarks", "examples")
ALLOWED = (messages.UnusedImport,)


class _Collect(reporter.Reporter):
    def __init__(self):
        super().__init__(None, None)
        self.problems = []

    def flake(self, message):
        if not isinstance(message, ALLOWED):
            self.problems.append(str(message))

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.problems.append(f"{filename}:{lineno}: {msg}")

    def unexpectedError(self, filename, msg):
        self.problems.append(f"{filename}: {msg}")


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_pyflakes_errors(folder):
    collect = _Collect()
    api.checkRecursive([os.path.join(ROOT, folder)], collect)
    assert not collect.problems, "\n".join(collect.problems)
