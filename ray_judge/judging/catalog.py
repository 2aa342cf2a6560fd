"""The judges a running judge knows: ``default``, a judges file, definitions from code.

A judges file (``LLM_JUDGE_JUDGES_FILE``) is TOML with one table per judge::

    [judges.terminal_agent]
    system_file = "prompts/terminal_agent_v4.2.md"   # relative to this file
    user = \"\"\"# Dockerfile contents:
    {dockerfile}

    # Agent trajectory:
    {response}
    \"\"\"
    parser = "yaml:score"
    scale = [0, 1]
    correction_turns = 1

The keys are :class:`~ray_judge.judging.definition.JudgeDefinition`'s. A bad file raises
:class:`~ray_judge.errors.JudgeDefinitionError` naming the file, the judge and the key;
:func:`ray_judge.start_judge` builds the catalog in the caller first, so start-up fails
there rather than in an actor.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..config import JudgeConfig
from ..errors import JudgeDefinitionError
from ..verdict import JudgeRequest
from .definition import DEFINITION_KEYS, JudgeDefinition
from .rubric import Rubric, load_rubric
from .template import caching_hint

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DEFAULT_JUDGE", "JudgeCatalog", "definition_from_table", "load_judges_file"]

DEFAULT_JUDGE = "default"


class JudgeCatalog:
    """Judge name -> definition, each with the configuration's defaults filled in."""

    def __init__(self, definitions: Iterable[JudgeDefinition]) -> None:
        self._by_name: dict[str, JudgeDefinition] = {}
        for definition in definitions:
            if not isinstance(definition, JudgeDefinition):
                raise TypeError(f"judges must be JudgeDefinition values, got "
                                f"{type(definition).__name__}: {definition!r:.60}")
            other = self._by_name.get(definition.name)
            if other is not None:
                raise JudgeDefinitionError(
                    f"judge {definition.name!r} is defined twice: in {other.source} and in "
                    f"{definition.source}", judge=definition.name, key="name",
                    value=definition.name, path=None)
            self._by_name[definition.name] = definition
        if DEFAULT_JUDGE not in self._by_name:
            raise ValueError(f"a catalog needs the {DEFAULT_JUDGE!r} judge")

    @classmethod
    def build(cls, config: JudgeConfig, *, rubric: Rubric | None = None,
              judges: Iterable[JudgeDefinition] = ()) -> JudgeCatalog:
        """``default`` (today's judge), the judges file of ``config``, then ``judges``.

        Raises:
            JudgeDefinitionError: the file or a definition is unusable, or a name is taken.
            RubricError: the configured rubric file is.
        """
        rubric = load_rubric(config) if rubric is None else rubric
        found = [JudgeDefinition(name=DEFAULT_JUDGE, source="built in"),
                 # score_group's and compare's judges, unless a request names another
                 JudgeDefinition(name="group", kind="group", source="built in"),
                 JudgeDefinition(name="pairwise", kind="pairwise", source="built in")]
        if config.judges_file is not None:
            found += load_judges_file(config.judges_file)
        for definition in judges:
            if isinstance(definition, JudgeDefinition) and definition.name == DEFAULT_JUDGE:
                raise JudgeDefinitionError(
                    f"the name {DEFAULT_JUDGE!r} is the built-in judge; give yours another "
                    "name", judge=DEFAULT_JUDGE, key="name", value=DEFAULT_JUDGE, path=None)
            found.append(definition)
        return cls(d.with_defaults(score_max=config.score_max,
                                   max_input_chars=config.max_input_chars, rubric=rubric)
                   if isinstance(d, JudgeDefinition) else d for d in found)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str | None) -> JudgeDefinition:
        """The judge called ``name`` (``None``: default); ValueError lists the known ones."""
        definition = self._by_name.get(DEFAULT_JUDGE if name is None else name)
        if definition is None:
            raise ValueError(f"unknown judge {name!r}; known: {', '.join(self._by_name)}")
        return definition

    def check(self, request: JudgeRequest, index: int | None = None) -> JudgeDefinition:
        """The judge of ``request``, after checking that the request suits it."""
        try:
            definition = self.get(request.judge)
            definition.check(request)
        except ValueError as exc:
            if index is None:
                raise
            raise ValueError(f"request[{index}]: {exc}") from None
        return definition

    def caching_hints(self) -> list[tuple[str, str]]:
        """(judge name, hint) for each judge whose user template keeps provider prompt
        caches from reusing its shared parts (see :func:`.template.caching_hint`)."""
        hints = ((d.name, caching_hint(d.user)) for d in self._by_name.values()
                 if d.kind == "pointwise" and d.system is not None)
        return [(name, hint) for name, hint in hints if hint is not None]

    def versions(self) -> dict[str, str]:
        """name -> version, for status()."""
        return {name: d.version for name, d in self._by_name.items()}


def load_judges_file(path: Path) -> list[JudgeDefinition]:
    """The judges of a TOML judges file (see the module docstring)."""
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise JudgeDefinitionError(f"judges file {source!r} cannot be read: {exc}",
                                   judge=None, key=None, value=None, path=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise JudgeDefinitionError(f"judges file {source!r} is not valid TOML: {exc}",
                                   judge=None, key=None, value=None, path=source) from None
    extra = sorted(set(data) - {"judges"})
    judges = data.get("judges")
    if extra or not isinstance(judges, Mapping) or not judges:
        raise JudgeDefinitionError(
            f"judges file {source!r} must hold [judges.<name>] tables and nothing else "
            f"(found {', '.join(extra) if extra else 'no judges'})",
            judge=None, key=extra[0] if extra else "judges", value=None, path=source)
    return [definition_from_table(name, table, base=Path(path).parent, source=source)
            for name, table in judges.items()]


def definition_from_table(name: str, table: Mapping[str, Any], *, base: Path | None = None,
                          source: str = "code") -> JudgeDefinition:
    """A judge from a judges-file table; ``*_file`` paths are relative to ``base``."""
    if name == DEFAULT_JUDGE:
        raise JudgeDefinitionError(
            f"{source}: the name {DEFAULT_JUDGE!r} is the built-in judge; give yours another "
            "name", judge=name, key="name", value=name, path=source)
    if not isinstance(table, Mapping):
        raise JudgeDefinitionError(
            f"{source}: judge {name!r} must be a table of settings, got "
            f"{type(table).__name__}", judge=name, key=None, value=repr(table)[:80],
            path=source)
    unknown = sorted(set(table) - set(DEFINITION_KEYS))
    if unknown:
        raise JudgeDefinitionError(
            f"{source}: judge {name!r}: unknown key(s) {unknown}; known: "
            f"{', '.join(DEFINITION_KEYS)}", judge=name, key=unknown[0],
            value=repr(table[unknown[0]])[:80], path=source)
    values = dict(table)
    for key in ("system", "user"):
        path_key = f"{key}_file"
        if path_key in values:
            if key in values:
                raise JudgeDefinitionError(
                    f"{source}: judge {name!r}: give {key} or {path_key}, not both",
                    judge=name, key=path_key, value=values[path_key], path=source)
            values[key] = _read(name, path_key, values.pop(path_key), base, source)
    if "canaries_file" in values:
        values["canary_answers"] = read_canaries(
            name, values.pop("canaries_file"), base, source)
    if isinstance(values.get("scale"), list):
        values["scale"] = tuple(values["scale"])
    return JudgeDefinition(name=name, source=source, **values)


def read_canaries(name: str, path: Any, base: Path | None, source: str) -> tuple[Any, ...]:
    """A judge's ``canaries_file``: one known-bad answer per line, or (``.jsonl``) one
    JSON value per line: a text or a list of chat messages (a trajectory)."""
    text = _read(name, "canaries_file", path, base, source)
    answers: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not str(path).endswith(".jsonl"):
            answers.append(line)
            continue
        try:
            answers.append(json.loads(line))
        except ValueError as exc:
            raise JudgeDefinitionError(
                f"{source}: judge {name!r}: canaries_file {path!r} line {number} is not "
                f"JSON: {exc}", judge=name, key="canaries_file", value=line[:80],
                path=source) from None
    if not answers:
        raise JudgeDefinitionError(f"{source}: judge {name!r}: canaries_file {path!r} holds "
                                   "no answers", judge=name, key="canaries_file", value=path,
                                   path=source)
    return tuple(answers)


def _read(name: str, key: str, path: Any, base: Path | None, source: str) -> str:
    if not isinstance(path, str) or not path.strip():
        raise JudgeDefinitionError(f"{source}: judge {name!r}: {key} must be a path, got "
                                   f"{path!r:.80}", judge=name, key=key, value=repr(path),
                                   path=source)
    full = Path(path).expanduser()
    if not full.is_absolute() and base is not None:
        full = base / full
    try:
        return full.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JudgeDefinitionError(f"{source}: judge {name!r}: {key} {str(full)!r} cannot "
                                   f"be read: {exc}", judge=name, key=key, value=path,
                                   path=source) from None
