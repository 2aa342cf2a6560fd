"""The public surface: ``__all__`` is sorted and complete, errors survive pickling."""

from __future__ import annotations

import inspect
import pickle

import pytest

import ray_judge
from ray_judge import errors


def test_all_is_sorted_and_every_name_exists() -> None:
    assert list(ray_judge.__all__) == sorted(ray_judge.__all__)
    for name in ray_judge.__all__:
        assert getattr(ray_judge, name) is not None


def test_every_public_error_is_exported() -> None:
    classes = {n for n, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, errors.JudgeError)}
    assert classes <= set(ray_judge.__all__)
    assert classes == set(errors.__all__)


def test_importing_the_package_does_not_import_ray_or_litellm() -> None:
    import subprocess
    import sys

    code = "import sys, ray_judge; print('ray' in sys.modules, 'litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize(
    "cls", [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, errors.JudgeError)])
def test_errors_survive_pickling_with_their_attributes(cls) -> None:
    attrs = {name: f"v-{name}" for name in cls._attrs}
    error = cls("it broke", **attrs)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls and str(back) == "it broke"
    assert {n: getattr(back, n) for n in cls._attrs} == attrs
    if issubclass(cls, errors.BackendCallError):
        assert back.status == cls.status and back.retryable == cls.retryable


def test_unknown_error_attribute_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unknown attributes"):
        errors.RateLimitedError("x", retry_afterr=3)
