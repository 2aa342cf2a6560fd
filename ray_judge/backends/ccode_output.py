"""Reading what ``claude -p --output-format json`` printed: a Completion, or the error it was.

The CLI prints one JSON object. Success is decided by ``is_error``, never by ``subtype``:
an API error comes back as ``"subtype": "success", "is_error": true`` with exit code 1.
Key order differs between CLI versions, so the object is parsed, never sliced. What the
real CLI 2.1.332 prints for each failure (against a fake Messages API on 127.0.0.1):

* 429 with an API key: status 429, ``API Error: Request rejected (429) · <message>``
* 429 with an OAuth token: status 429, ``API Error: Server is temporarily limiting
  requests (not your usage limit) · <message>``
* 429 with ``anthropic-ratelimit-unified-status: rejected``, OAuth token: status 429,
  ``"api_error": "usage_limit_reached"``, ``You've hit your 5-hour limit · resets 12:53pm
  (UTC)`` (``weekly limit``, ``Opus limit``; ``resets Nov 28, 11:53am (Europe/Berlin)``
  once the reset is a day away, ``resets Jan 4, 2027, 12:19pm (UTC)`` in another year;
  the zone is the CLI process's own)
* 401: status 401, ``Failed to authenticate. API Error: 401 <message>``
* no credentials at all: status null, ``Not logged in · Please run /login``
* 500 / 529: status 500 / 529, ``API Error: 529 <message>. This is a server-side issue,
  usually temporary ...``
* a body that is not JSON: status null, ``API Error: API returned an empty or malformed
  response (HTTP 200) ...`` (after one non-streaming retry)
* connection refused: status null, ``"api_error": "connection_failed"``
* the model asks for a tool: ``"subtype": "error_max_turns"``, no ``result``,
  ``"errors": ["Reached maximum number of turns (1)"]``

Older CLIs reported a subscription limit as ``Claude AI usage limit reached|<epoch>``.

With ``--json-schema`` the model is offered one tool, ``StructuredOutput``. A call of it
ends the turn with ``"structured_output": {...}`` (the tool's input, validated by the
CLI against the schema) and ``result`` set to that object as JSON text. A model that
answers in text instead is sent a ``[structured-output-enforce] You MUST call the
StructuredOutput tool`` turn, which ``--max-turns 1`` cuts off: ``error_max_turns`` and
no ``result``; an input the schema rejects ends the same way. The answer is then read
from the ``assistant`` events (stream-json), so the judge's text parser gets it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from ..errors import (
    AuthError,
    BackendCallError,
    PermanentBackendError,
    RateLimitedError,
    TransientBackendError,
    UsageLimitedError,
)
from .base import Completion

__all__ = ["STRUCTURED_OUTPUT_TOOL", "parse_cli_output", "parse_reset_time"]

logger = logging.getLogger(__name__)

_MAX_RESULT_CHARS = 500
#: The one tool the CLI offers the model under ``--json-schema``.
STRUCTURED_OUTPUT_TOOL = "StructuredOutput"

_USAGE_LIMIT = re.compile(r"usage limit reached|hit your .{0,40}limit", re.IGNORECASE)
_RATE_LIMIT = re.compile(r"\(429\)|rate.?limit|limiting requests|too many requests",
                         re.IGNORECASE)
_AUTH = re.compile(r"invalid api key|/login|not logged in|failed to authenticate|"
                   r"oauth token (?:has expired|has been revoked)|authentication_error",
                   re.IGNORECASE)
_PERMANENT = re.compile(r"prompt is too long|invalid_request_error|not_found_error",
                        re.IGNORECASE)

# "resets 12:53pm (UTC)", "resets 1pm (America/New_York)", "resets Nov 26, 5pm (UTC)",
# "resets Jan 4, 2027, 12:19pm (UTC)". The CLI floors to the minute, adds the date once
# the reset is a day away or more, and the year when it is not this year.
_RESETS = re.compile(
    r"resets\s+(?:(?P<month>[A-Za-z]{3})[a-z]*\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+"
    r"(?:(?P<year>\d{4}),?\s+)?)?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?"
    r"(?:\s*\((?P<zone>[^)]+)\))?",
    re.IGNORECASE,
)
_OLD_FORMAT = re.compile(r"usage limit reached\|(?P<epoch>\d{9,11})", re.IGNORECASE)
_OFFSET_ZONE = re.compile(r"(?:UTC|GMT)\s*(?P<sign>[+-])(?P<h>\d{1,2})(?::?(?P<m>\d{2}))?$",
                          re.IGNORECASE)
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# A time shown a little in the past is "now" (the CLI floors to the minute), not tomorrow.
_PAST_SLACK = timedelta(minutes=2)


def _zone(name: str | None, default: tzinfo) -> tzinfo | None:
    if name is None:
        return default
    name = name.strip()
    if name.upper() in ("UTC", "GMT", "Z", "ETC/UTC", "ETC/GMT"):
        return timezone.utc
    offset = _OFFSET_ZONE.match(name)
    if offset:
        delta = timedelta(hours=int(offset["h"]), minutes=int(offset["m"] or 0))
        return timezone(-delta if offset["sign"] == "-" else delta)
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except (ImportError, KeyError, ValueError, OSError):  # unknown name, or no tz database
        return None


def parse_reset_time(text: str, now: float, default_zone: tzinfo = timezone.utc) -> float | None:
    """When a subscription usage limit lifts, in epoch seconds, read from the CLI's message.

    Understands ``Claude AI usage limit reached|<epoch>`` (older CLIs) and the current
    ``... · resets 12:01pm (UTC)`` / ``resets Nov 26, 3pm (Europe/Berlin)`` /
    ``resets Jan 4, 2027, 12:19pm (UTC)`` forms; a time without a date is its next
    occurrence after ``now``, a date without a year likewise.

    Args:
        text: The CLI's ``result`` text.
        now: The current time, epoch seconds.
        default_zone: The zone of a time shown without one.

    Returns:
        Epoch seconds, or None when the text holds no reset time this function can read.
    """
    old = _OLD_FORMAT.search(text)
    if old:
        return float(old["epoch"])
    match = _RESETS.search(text)
    if not match:
        return None
    zone = _zone(match["zone"], default_zone)
    hour, minute = int(match["hour"]), int(match["minute"] or 0)
    ampm = (match["ampm"] or "").replace(".", "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if zone is None or hour > 23 or minute > 59:
        return None
    local_now = datetime.fromtimestamp(now, zone)
    try:
        if match["month"] is None:
            when = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if when < local_now - _PAST_SLACK:
                when += timedelta(days=1)  # wall-clock arithmetic: same time, next day
        else:
            month = _MONTHS.get(match["month"][:3].lower())
            if month is None:
                return None
            year = int(match["year"] or local_now.year)
            when = datetime(year, month, int(match["day"]), hour, minute, tzinfo=zone)
            if match["year"] is None and when < local_now - _PAST_SLACK:
                when = when.replace(year=year + 1)
    except ValueError:  # Feb 30, or Feb 29 in a year without it
        return None
    return when.timestamp()


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tokens(usage: object) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    # Cached prompt tokens are prompt tokens too (LiteLLM's prompt_tokens counts them).
    parts = [_int(usage.get(k)) for k in
             ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    known = [p for p in parts if p is not None]
    return (sum(known) if known else None), _int(usage.get("output_tokens"))


def _load(stdout: str) -> dict[str, Any] | None:
    text = stdout.strip()
    candidates = [text]
    # A CLI that prints a warning line before its JSON: take the last line that is JSON.
    candidates += [line for line in reversed(text.splitlines()) if line.startswith("{")]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def parse_cli_output(stdout: str, *, model: str, now: float, context: dict[str, Any],
                     scrub: Callable[[str], str] = str,
                     schema: bool = False) -> Completion | BackendCallError:
    """The Completion in the CLI's stdout, or the error it reports (returned, not raised).

    ``stdout`` is the one JSON object of ``--output-format json`` or the event lines of
    one turn of ``stream-json`` (the result is the last). ``context`` (``backend``,
    ``exit_code``, ``stderr``) is attached to any error, and ``scrub`` masks credentials
    in an error's text. Output that is not a result object is a TransientBackendError.
    With ``schema`` (``--json-schema`` was passed), ``structured_output`` becomes
    :attr:`Completion.structured`, and a model that did not deliver it gives its text
    answer (read from the turn's ``assistant`` events) with ``structured=None``.
    """
    data = _load(stdout)
    if data is None or not isinstance(data.get("is_error"), bool):
        return TransientBackendError(scrub(
            f"claude printed no JSON result (exit code {context.get('exit_code')}): "
            f"{stdout.strip()[:200]!r}; stderr: {context.get('stderr') or ''}"), **context)
    result = data.get("result")
    if data["is_error"] is False and isinstance(result, str):
        # The CLI's own timings, for debugging only: Verdict.latency_s is measured by us.
        logger.debug("claude: %s ms, of which API %s ms", data.get("duration_ms"),
                     data.get("duration_api_ms"))
        structured = data.get("structured_output") if schema else None
        return _completion(data, result, model, structured)
    if schema and data.get("subtype") == "error_max_turns":
        text = _unstructured_answer(stdout)
        if text is not None:
            return _completion(data, text, model, None)
    return _error(data, now, context, scrub)


def _completion(data: dict[str, Any], text: str, model: str, structured: Any) -> Completion:
    cost = data.get("total_cost_usd")
    input_tokens, output_tokens = _tokens(data.get("usage"))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Completion(
        text=text, model=model, input_tokens=input_tokens, output_tokens=output_tokens,
        cache_read_tokens=_int(usage.get("cache_read_input_tokens")),
        cache_write_tokens=_int(usage.get("cache_creation_input_tokens")),
        cost_usd=float(cost) if isinstance(cost, (int, float)) and cost >= 0 else None,
        structured=structured)


def _unstructured_answer(stdout: str) -> str | None:
    """The text of a turn whose model did not deliver structured output, or None.

    None when the model asked for any tool but ``StructuredOutput`` (that stays the
    "asked for a tool" error). Without text, an input the schema rejected is returned
    as JSON text: the judge's parser reports it, and the Verdict keeps it as ``raw``.
    """
    texts: list[str] = []
    rejected: list[str] = []
    for line in stdout.splitlines():
        if '"assistant"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("type") != "assistant":
            continue
        content = (event.get("message") or {}).get("content")
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                if block.get("name") != STRUCTURED_OUTPUT_TOOL:
                    return None
                rejected.append(json.dumps(block.get("input")))
    text = "\n".join(t for t in texts if t.strip())
    if text:
        return text
    return rejected[-1] if rejected else None


def _error(data: dict[str, Any], now: float, context: dict[str, Any],
           scrub: Callable[[str], str]) -> BackendCallError:
    result = data.get("result") if isinstance(data.get("result"), str) else None
    status = _int(data.get("api_error_status"))
    kind = f"{data.get('api_error') or ''} {data.get('api_error_type') or ''}"
    subtype = str(data.get("subtype") or "")
    if result is None:
        errors = data.get("errors")
        detail = "; ".join(map(str, errors)) if isinstance(errors, list) else "no result"
        if subtype == "error_max_turns":
            detail = f"the judge model asked for a tool (none offered): {detail}"
        return TransientBackendError(
            scrub(f"claude: {subtype or 'error'}: {detail}"[:_MAX_RESULT_CHARS]), **context)
    result = scrub(result)
    message = f"claude: {result[:_MAX_RESULT_CHARS]}"
    info = {**context, "http_status": status, "raw": result}
    if "usage_limit" in kind or _USAGE_LIMIT.search(result):
        return UsageLimitedError(message, resets_at=parse_reset_time(result, now), **info)
    if status == 429 or "rate_limit" in kind or _RATE_LIMIT.search(result):
        return RateLimitedError(message, **info)
    if status in (401, 403) or "authentication" in kind or _AUTH.search(result):
        return AuthError(message, **info)
    if status is not None and 400 <= status < 500 and status not in (408, 409):
        return PermanentBackendError(message, **info)
    if status is None and _PERMANENT.search(result):
        return PermanentBackendError(message, **info)
    return TransientBackendError(message, **info)  # 5xx, 529, connection, malformed body
