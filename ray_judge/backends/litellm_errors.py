"""LiteLLM's errors on the lean transport, made as LiteLLM's provider code makes them.

A failure is turned into the exception LiteLLM's provider code would have raised for
the same HTTP answer (a 200 without a readable choice included), mapped by LiteLLM's
``exception_type``, then by :func:`~ray_judge.backends.litellm_backend.translate_error`
like any other: one status table for both transports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from .litellm_route import Route

__all__ = ["litellm_failure", "unreadable_answer"]


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

