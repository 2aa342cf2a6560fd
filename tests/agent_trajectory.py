"""A realistic multi-turn terminal-agent trajectory (OpenAI chat messages with tool calls),
about 80 KB, built deterministically: the agent fixes a failing date-parsing test in a
small Python project inside a container, reading files, running pytest, editing, and
verifying. Used to test trajectory judges end to end."""

from __future__ import annotations

import json
from typing import Any

DOCKERFILE = """\
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git make \\
    && rm -rf /var/lib/apt/lists/*
WORKDIR /work/ledger
COPY . /work/ledger
RUN pip install --no-cache-dir -e '.[test]'
# The grader runs: pytest -q tests/
CMD ["bash"]
"""

TASK = ("The ledger project's test suite fails on `tests/test_dates.py`. Find the cause, "
        "fix it in the library (not in the tests), and make sure the whole suite passes.")


def _module(name: str, functions: int) -> str:
    lines = [f'"""{name}: part of the ledger package."""', "", "from __future__ import annotations",
             "", "import datetime as _dt", "from decimal import Decimal", ""]
    for i in range(functions):
        lines += [
            "",
            f"def {name}_rule_{i}(amount: Decimal, when: _dt.date, *, currency: str = 'EUR') "
            "-> Decimal:",
            f'    """Apply rule {i} of {name} to ``amount`` booked on ``when``."""',
            "    if amount < 0:",
            f"        raise ValueError(f'{name} rule {i}: negative amount {{amount}}')",
            f"    rate = Decimal('1.{i:02d}') if when.month in ({1 + i % 12}, {1 + (i + 6) % 12}) "
            "else Decimal('1')",
            "    if currency != 'EUR':",
            "        rate *= Decimal('0.98')",
            "    return (amount * rate).quantize(Decimal('0.01'))",
        ]
    return "\n".join(lines) + "\n"


_DATES_BUGGY = '''"""Parsing booking dates as they appear in bank exports."""

from __future__ import annotations

import datetime as _dt
import re

_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y")
_COMPACT = re.compile(r"^(\\d{4})(\\d{2})(\\d{2})$")


def parse_booking_date(text: str) -> _dt.date:
    """Parse a booking date: ISO, German, US, or compact YYYYMMDD."""
    text = text.strip()
    match = _COMPACT.match(text)
    if match:
        year, day, month = (int(g) for g in match.groups())
        return _dt.date(year, month, day)
    for fmt in _FORMATS:
        try:
            return _dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"unrecognised booking date {text!r}")
'''

_DATES_FIXED = _DATES_BUGGY.replace("year, day, month = ", "year, month, day = ")


def _pytest_failure(runs: int) -> str:
    cases = []
    for i in range(runs):
        cases.append(
            f"________ test_compact_dates[2024{i % 12 + 1:02d}{13 + i % 15:02d}] ________\n\n"
            f"text = '2024{i % 12 + 1:02d}{13 + i % 15:02d}', expected = "
            f"datetime.date(2024, {i % 12 + 1}, {13 + i % 15})\n\n"
            "    @pytest.mark.parametrize(('text', 'expected'), COMPACT_CASES)\n"
            "    def test_compact_dates(text, expected):\n"
            ">       assert parse_booking_date(text) == expected\n\n"
            "tests/test_dates.py:41: \n"
            "_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _\n"
            "    def parse_booking_date(text: str) -> _dt.date:\n"
            "        text = text.strip()\n"
            "        match = _COMPACT.match(text)\n"
            "        if match:\n"
            "            year, day, month = (int(g) for g in match.groups())\n"
            ">           return _dt.date(year, month, day)\n"
            "E           ValueError: month must be in 1..12\n\n"
            "ledger/dates.py:17: ValueError\n")
    summary = "\n".join(f"FAILED tests/test_dates.py::test_compact_dates[2024{i % 12 + 1:02d}"
                        f"{13 + i % 15:02d}] - ValueError: month must be in 1..12"
                        for i in range(runs))
    return ("============================= test session starts ==============================\n"
            "platform linux -- Python 3.11.9, pytest-8.2.0, pluggy-1.5.0\n"
            "rootdir: /work/ledger\ncollected 212 items\n\n"
            "tests/test_accounts.py ........................................... [ 20%]\n"
            "tests/test_dates.py ......" + "F" * runs + "...... [ 40%]\n"
            "tests/test_rules.py .............................................. [100%]\n\n"
            "=================================== FAILURES ===================================\n"
            + "\n".join(cases) +
            "=========================== short test summary info ============================\n"
            + summary + f"\n======================= {runs} failed, {212 - runs} passed in 3.41s "
            "========================\n")


def _call(ident: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": ident, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}


def _result(ident: str, name: str, stdout: str, exit_code: int = 0) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": ident, "name": name,
            "content": json.dumps({"exit_code": exit_code, "stdout": stdout})}


def trajectory() -> list[dict[str, Any]]:
    """The trajectory, system prompt to final answer (about 80 KB rendered)."""
    rules = {name: _module(name, 24) for name in ("fees", "interest", "fx")}
    steps: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a careful software agent working in a Linux "
                                      "container. Use the tools; verify before you claim."},
        {"role": "user", "content": TASK},
        {"role": "assistant", "content": "I'll start by looking at the project layout.",
         "tool_calls": [_call("call_01", "bash", {"command": "ls -R /work/ledger | head -50"})]},
        _result("call_01", "bash", "/work/ledger:\nMakefile\nREADME.md\nledger\npyproject.toml"
                "\ntests\n\n/work/ledger/ledger:\n__init__.py\naccounts.py\ndates.py\nfees.py\n"
                "fx.py\ninterest.py\n\n/work/ledger/tests:\ntest_accounts.py\ntest_dates.py\n"
                "test_rules.py\n"),
        {"role": "assistant", "content": "Let me run the failing tests to see the error.",
         "tool_calls": [_call("call_02", "bash", {"command": "cd /work/ledger && pytest -q "
                                                            "tests/ 2>&1 | tail -400"})]},
        _result("call_02", "bash", _pytest_failure(48), exit_code=1),
        {"role": "assistant", "content": "All failures are compact YYYYMMDD dates with a day "
                                         "above 12. Reading the parser.",
         "tool_calls": [_call("call_03", "read_file", {"path": "ledger/dates.py"})]},
        _result("call_03", "read_file", _DATES_BUGGY),
    ]
    for i, (name, source) in enumerate(rules.items(), start=4):
        steps += [
            {"role": "assistant", "content": f"Checking whether {name}.py also handles dates.",
             "tool_calls": [_call(f"call_{i:02d}", "read_file", {"path": f"ledger/{name}.py"})]},
            _result(f"call_{i:02d}", "read_file", source),
        ]
    steps += [
        {"role": "assistant", "content": "The rule modules only take `date` objects. The bug "
                                         "is the unpacking order in the compact branch: the "
                                         "groups are year, month, day.",
         "tool_calls": [_call("call_07", "write_file", {"path": "ledger/dates.py",
                                                        "content": _DATES_FIXED})]},
        _result("call_07", "write_file", "wrote 812 bytes to ledger/dates.py"),
        {"role": "assistant", "content": "Re-running the whole suite.",
         "tool_calls": [_call("call_08", "bash", {"command": "cd /work/ledger && pytest -q "
                                                            "tests/"})]},
        _result("call_08", "bash", "........................................................"
                "................................................................ [ 60%]\n"
                "........................................................................ "
                "[100%]\n212 passed in 3.02s\n"),
        {"role": "assistant", "content": [
            {"type": "text", "text": "Fixed: `parse_booking_date` unpacked compact dates as "
                                     "year, day, month. It now reads year, month, day; the "
                                     "whole suite passes (212 passed)."}]},
    ]
    return steps
