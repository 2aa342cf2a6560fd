"""The package's layers, read from its imports: no module imports from a layer above its
own, and no two subpackages import each other.

From the bottom: the core values (``verdict``, ``errors``, ``spec``, ``messages``,
``settings``, ``config``, ``prompt``, ``markers``), ``selection/``, ``backends/``
(transports), ``judging/``, ``shift/`` and ``quality/``, ``pool/``, then ``monitoring/`` and
``integrations/``, then the CLI. Every import counts, lazy ones inside functions and
``TYPE_CHECKING`` blocks too: a lazy upward import is still an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ray_judge"

CORE = ("verdict", "errors", "spec", "messages", "settings", "config", "prompt", "markers")
#: layer of each top-level name under ray_judge, bottom first
LAYERS: dict[str, int] = {
    **dict.fromkeys(CORE, 0),
    "selection": 1,
    "backends": 2,
    "judging": 3,
    "shift": 4,
    "quality": 4,  # judged against labels and canaries; beside shift, below the pool
    "pool": 5,
    "monitoring": 6,
    "integrations": 6,
    "testing": 6,   # the fake providers: production code the tests and the bench use
    "cli": 7,
    "_launch": 7,
    "configuration_page": 7,  # writes docs/configuration.md from the settings table
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Every ray_judge module ``module`` imports, as absolute names."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = (package[: len(package) - node.level + 1] if node.level else [])
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:  # ``from . import collector`` names a module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "ray_judge" or name.startswith("ray_judge.")}


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_has_a_layer() -> None:
    missing = {_top(m) for m in MODULES} - set(LAYERS) - {None}
    assert not missing, f"give these a layer in LAYERS: {sorted(missing)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _top(m) is not None))
def test_no_module_imports_from_a_layer_above_its_own(module: str) -> None:
    own = LAYERS[_top(module)]
    upward = sorted(f"{target} (layer {LAYERS[_top(target)]})"
                    for target in _imports(module, MODULES[module])
                    if target != "ray_judge" and LAYERS[_top(target)] > own)
    assert not upward, f"{module} (layer {own}) imports from above: {', '.join(upward)}"


def test_no_module_below_the_facade_imports_the_package_root() -> None:
    offenders = sorted(m for m in MODULES if m != "ray_judge"
                       and "ray_judge" in _imports(m, MODULES[m]))
    assert not offenders, f"import from the defining module, not ray_judge: {offenders}"


def test_subpackages_do_not_import_each_other() -> None:
    edges: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        here = _top(module)
        for target in _imports(module, path):
            there = _top(target)
            if here and there and here != there:
                edges.setdefault(here, set()).add(there)
    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a]
                    if a < b and a in edges.get(b, set()))
    assert not cycles, f"subpackages that import each other: {cycles}"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The scanner itself: a relative, a lazy and a TYPE_CHECKING import are all found."""
    module = tmp_path / "ray_judge" / "backends" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text("from ..judging import catalog\n"
                      "def f():\n    from ..pool.judge import Judge\n"
                      "if TYPE_CHECKING:\n    from ray_judge.shift.stats import ShiftStats\n")
    found = _imports("ray_judge.backends.x", module)
    assert {"ray_judge.judging.catalog", "ray_judge.pool.judge",
            "ray_judge.shift.stats"} <= found


def test_only_the_cluster_module_joins_a_cluster_or_finds_the_judge() -> None:
    """``ray.init`` and ``ray.get_actor`` are called in ``pool/cluster.py`` only, so the
    policy for a missing cluster or judge is written once."""
    calls = []
    for module, path in MODULES.items():
        if module == "ray_judge.pool.cluster":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr in ("init", "get_actor")
                    and isinstance(node.value, ast.Name) and node.value.id == "ray"):
                calls.append(f"{module}:{node.lineno} ray.{node.attr}")
    assert not calls, f"reach the cluster through ray_judge.pool.cluster: {calls}"


#: Past this a module has more than one noun in it: cut it at the seam a newcomer would
#: guess (STYLE.md), rather than raise the number.
MAX_LINES = 400


def test_no_module_is_over_400_lines() -> None:
    long = {m: n for m, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
