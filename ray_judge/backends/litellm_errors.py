"""LiteLLM's errors, and ours for them.

Every LiteLLM exception is translated here, once, into a picklable
:class:`~ray_judge.errors.BackendCallError` (LiteLLM's own classes do not survive
pickling, and under Ray every error crosses a process boundary). As measured with
litellm 1.110.2 against ``ray_judge.testing.FakeLLMServer``:

* ``Timeout`` (a read timeout arrives as 408, HTTP 504 too) -> BackendTimeoutError
* ``RateLimitError`` (429) -> RateLimitedError with ``retry_after``; but a subscription
  limit (``anthropic-ratelimit-unified-status: rejected``) or OpenAI's
  ``insufficient_quota`` -> UsageLimitedError (retrying cannot help)
* 401 ``AuthenticationError``, 403 (OpenAI: plain ``APIError``; Anthropic:
  ``PermissionDeniedError``), and a missing API key (OpenAI path: a 500!) -> AuthError
* ``BadRequestError`` and its subclasses (400, 422, context window, content policy),
  ``NotFoundError`` (404, no such model) -> PermanentBackendError; 402 -> UsageLimitedError
* ``InternalServerError`` (500, Anthropic 529, connection refused, dropped connection,
  malformed body, a 200 without ``choices``), ``BadGatewayError`` (502),
  ``ServiceUnavailableError`` (503), ``APIConnectionError`` (Anthropic malformed body),
  ``APIError`` (the same 200 from vLLM), anything else -> TransientBackendError

On the lean transport a failure is first turned into the exception LiteLLM's provider
code would have raised for the same HTTP answer (a 200 without a readable choice
included), mapped by LiteLLM's ``exception_type``, then by :func:`translate_error` like
any other: one status table for both transports.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from ..config import is_secret_name
from ..errors import (
    AuthError,
    BackendCallError,
    BackendTimeoutError,
    PermanentBackendError,
    RateLimitedError,
    TransientBackendError,
    UsageLimitedError,
)
from .litellm_route import Route

__all__ = ["litellm_failure", "retry_after_seconds", "scrub", "translate_error",
           "unreadable_answer"]

_MAX_MESSAGE_CHARS = 1000


def litellm_failure(litellm: ModuleType, route: Route, *, status: int | None = None,
                    headers: dict[str, str] | None = None, text: str = "",
                    network: BaseException | None = None,
                    bad_json: BaseException | None = None) -> BaseException:
    """LiteLLM's exception for an HTTP error (``status``), a connection that gave no
    answer (``network``), or a body that is not JSON (``bad_json``)."""
    headers = headers or {}
    if route.sdk:
        from litellm.llms.openai.common_utils import OpenAIError

        if network is not None:
            original: BaseException = OpenAIError(status_code=500, message="Connection error.")
        elif bad_json is not None:
            original = OpenAIError(status_code=500, message=str(bad_json))
        else:
            message, data = _sdk_message(status or 500, text)
            original = OpenAIError(status_code=status or 500, message=message, headers=headers,
                                   body=data)
    else:
        config = litellm.ProviderConfigManager.get_provider_chat_config(
            model=route.model, provider=litellm.LlmProviders(route.provider))
        if network is not None:
            original = config.get_error_class(error_message=str(network), status_code=500,
                                              headers={})
        elif bad_json is not None:
            original = config.get_error_class(
                error_message=f"Unable to get json response - {bad_json}, Original Response: "
                              f"{text}", status_code=status or 200, headers=headers)
        else:
            original = config.get_error_class(error_message=text, status_code=status or 500,
                                              headers=headers)
    return _mapped(route, original)


def unreadable_answer(litellm: ModuleType, route: Route, data: Any,
                      headers: Mapping[str, str] | None = None) -> BaseException | None:
    """LiteLLM's exception for a good answer whose JSON it cannot read (no ``choices``, a
    choice without a message, an ``error`` in place of the answer); None when LiteLLM
    reads it."""
    if route.wire == "anthropic":
        return _unreadable_messages(litellm, route, data, headers or {})
    from litellm.litellm_core_utils.llm_response_utils.convert_dict_to_response import (
        convert_to_model_response_object,
    )

    if route.sdk and isinstance(data, dict):
        # LiteLLM's SDK path reads the SDK's model of the answer, dumped back to a dict.
        from litellm.llms.openai.common_utils import model_dump_provider_response
        from openai.types.chat import ChatCompletion

        data = model_dump_provider_response(ChatCompletion.construct(**data))
    response = litellm.ModelResponse()
    response.usage = litellm.Usage()  # as completion() starts it (its repr is in the error)
    try:  # what both of LiteLLM's OpenAI paths do with the answer's JSON
        convert_to_model_response_object(response_object=data, model_response_object=response)
    except Exception as exc:
        error: BaseException = exc
    else:
        return None
    if route.sdk:  # LiteLLM's OpenAI SDK path wraps whatever the conversion raised
        from litellm.llms.openai.common_utils import OpenAIError

        error = OpenAIError(status_code=getattr(error, "status_code", 500),
                            message=getattr(error, "message", str(error)),
                            body=getattr(error, "body", None))
    return _mapped(route, error)


def _unreadable_messages(litellm: ModuleType, route: Route, data: Any,
                        headers: Mapping[str, str]) -> BaseException | None:
    # What LiteLLM's Anthropic provider raises reading this answer (run only for an
    # answer the lean parser refused: LiteLLM's reading costs a few ms).
    import httpx

    config = litellm.ProviderConfigManager.get_provider_chat_config(
        model=route.model, provider=litellm.LlmProviders(route.provider))
    try:
        config.transform_parsed_response(
            completion_response=data, raw_response=httpx.Response(200, headers=dict(headers)),
            model_response=litellm.ModelResponse())
    except Exception as exc:
        error: BaseException = exc
    else:
        return None
    return _mapped(route, error)


def _mapped(route: Route, error: BaseException) -> BaseException:
    """``error`` as LiteLLM's ``exception_type`` maps it for the route's provider."""
    from litellm.litellm_core_utils.exception_mapping_utils import exception_type

    try:
        return exception_type(model=route.model, original_exception=error,
                              custom_llm_provider=route.provider)
    except Exception as mapped:  # exception_type raises the mapped exception
        return mapped


def _sdk_message(status: int, text: str) -> tuple[str, Any]:
    # The OpenAI SDK's error text and body for an error answer.
    message = f"Error code: {status}"
    body: Any = text.strip()
    try:
        body = json.loads(body)
    except ValueError:
        pass
    else:
        error = body.get("error", body) if isinstance(body, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        if isinstance(detail, str) and detail:
            message += f" - {detail}"
    data = body.get("error", body) if isinstance(body, dict) else body
    return message, data


# -- error translation -------------------------------------------------------------------

# Values that look like credentials, wherever they appear in a provider's message.
_SECRET_PATTERNS = (
    # A labelled value first, so "Authorization: Bearer X" keeps its label and scheme.
    (re.compile(r"(?i)((?:api[_-]?key|x-api-key|authorization|access[_-]?token|secret|"
                r"password)[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic)\s+)?)[^\s\"',}]{6,}"),
     r"\1***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 ***"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "***"),  # OpenAI, Anthropic
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "***"),  # AWS access key id
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), "***"),  # Google API key
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), "***"),  # Hugging Face
)


def scrub(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with credentials masked: secret environment values and key-like tokens."""
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if len(value) >= 8 and is_secret_name(name) and value in text:
            text = text.replace(value, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _headers(exc: BaseException) -> dict[str, str]:
    for source in (getattr(exc, "litellm_response_headers", None),
                   getattr(getattr(exc, "response", None), "headers", None),
                   getattr(exc, "headers", None)):
        if source:
            try:
                return {str(k).lower(): str(v) for k, v in source.items()}
            except (AttributeError, TypeError):
                continue
    return {}


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait per ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP-date).

    ``headers`` must have lower-case keys. None when absent or unreadable; never negative.
    """
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def _provider_code(exc: BaseException) -> str | None:
    # The provider's own error code, when litellm kept the parsed error body (OpenAI path).
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        code = body.get("code") or body.get("type")
        return code if isinstance(code, str) else None
    return None


def _class_names(exc: BaseException) -> set[str]:
    # By name, not isinstance: litellm stays lazily imported, and the names are its API.
    return {cls.__name__ for cls in type(exc).__mro__}


# Clients that refuse to send a request without a key raise before any HTTP happens;
# LiteLLM's OpenAI path then reports a 500, which would be retried for nothing.
_MISSING_KEY = re.compile(
    r"(?i)missing credentials|missing \w+ api key|api_key client option must be set|"
    r"no key is set")


def translate_error(exc: BaseException, *, backend: str | None = None,
                    timeout: float | None = None) -> BackendCallError:
    """Our picklable error for any exception out of ``litellm.acompletion``.

    Only strings and numbers are kept (never the exception, response or request), and
    credentials are scrubbed from the message.
    """
    names = _class_names(exc)
    status = _status(exc)
    headers = _headers(exc)
    text = scrub(str(exc)).strip()
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[:_MAX_MESSAGE_CHARS] + "...[truncated]"
    common: dict[str, Any] = {"backend": backend, "http_status": status}

    if "Timeout" in names or "APITimeoutError" in names or isinstance(exc, TimeoutError) \
            or status in (408, 504):
        where = f" within {timeout:g}s" if timeout is not None else ""
        return BackendTimeoutError(text or f"no answer{where}", **common)
    if status == 429 or "RateLimitError" in names:
        if headers.get("anthropic-ratelimit-unified-status") == "rejected":
            reset = headers.get("anthropic-ratelimit-unified-reset")
            resets_at = float(reset) if reset and reset.replace(".", "", 1).isdigit() else None
            return UsageLimitedError(text or "subscription usage limit reached",
                                     resets_at=resets_at, **common)
        if _provider_code(exc) == "insufficient_quota" or "insufficient_quota" in text:
            return UsageLimitedError(text, **common)
        return RateLimitedError(text or "rate limited",
                                retry_after=retry_after_seconds(headers), **common)
    if status in (401, 403) or names & {"AuthenticationError", "PermissionDeniedError"} \
            or _MISSING_KEY.search(text):
        return AuthError(text or f"authentication failed ({status})", **common)
    if status == 402 or "PaymentRequiredError" in names:
        return UsageLimitedError(text or "payment required", **common)
    if names & {"BadRequestError", "NotFoundError", "UnprocessableEntityError"} \
            or status in (400, 404, 413, 422):
        return PermanentBackendError(text or f"request refused ({status})", **common)
    known = names & {"InternalServerError", "BadGatewayError", "ServiceUnavailableError",
                     "APIConnectionError", "APIError"}
    prefix = "" if known else f"unexpected {type(exc).__name__}: "
    return TransientBackendError(prefix + (text or type(exc).__name__), **common)
