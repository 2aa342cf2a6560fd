"""The planted provider keys of the LiteLLM backend's unit tests: a test that finds one in
a log, a repr or a status has found a leak. The fake providers they are sent to are the
``server`` and ``provider_env`` fixtures of ``tests/unit/conftest.py``."""

from __future__ import annotations

KEYS = {"OPENAI_API_KEY": "sk-test-openai-PLANTED0123456789",
        "ANTHROPIC_API_KEY": "sk-ant-api03-PLANTED0123456789",
        "HOSTED_VLLM_API_KEY": "vllm-key-PLANTED0123456789"}
