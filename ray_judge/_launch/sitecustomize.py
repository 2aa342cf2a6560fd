"""Make ``ray.init()`` join the judge's namespace in programs run by ``launch.sh``.

Ray 2.x honours ``RAY_NAMESPACE`` only for Ray Client (``ray://``) addresses; a driver
that calls plain ``ray.init()`` / ``ray.init(address="auto")`` gets a fresh anonymous
namespace, where ``ray.get_actor("judge")`` finds nothing. launch.sh puts this directory
first on ``PYTHONPATH`` for the command it runs, so that ``ray.init`` without a
``namespace`` argument uses ``RAY_NAMESPACE``. An explicit ``namespace=`` always wins,
and nothing happens in a program that never imports ray. Any other ``sitecustomize``
on the path still runs.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain_other_sitecustomize() -> None:
    others = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


def _patch(ray_module) -> None:
    namespace = os.environ.get("RAY_NAMESPACE")
    original = getattr(ray_module, "init", None)
    if not namespace or original is None:
        return

    @functools.wraps(original)
    def init(*args, **kwargs):
        if kwargs.get("namespace") is None:
            kwargs["namespace"] = namespace
        return original(*args, **kwargs)

    ray_module.init = init


class _PatchRayInit(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "ray":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if os.environ.get("RAY_NAMESPACE"):
    sys.meta_path.insert(0, _PatchRayInit())
_chain_other_sitecustomize()
