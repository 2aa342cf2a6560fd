"""The two ends of tests/system/test_rm_token_netns.py's test in a network namespace of its own.

Run inside the namespace (``ip netns exec NS python -m tests.rm_netns ...``), because
its 127.0.0.1 and its 192.0.2.10 exist only there:

* ``judge``: a Ray cluster, a fake model and a judge (answer ``SCORE: 8``); prints
  ``READY <gcs address>`` and runs until its stdin closes.
* ``reward URL``: OpenRLHF's own HTTP client posts one sample to URL; prints one JSON
  line, ``{"rewards": ...}`` or ``{"error": ..., "log": [...]}`` (its log says why).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from tests.ray_cluster import init_local


def judge() -> None:
    import ray

    import ray_judge
    from ray_judge.testing import FakeLLMServer

    init_local(num_cpus=1)
    with FakeLLMServer(reply=lambda body: "Looks right.\nSCORE: 8") as fake:
        handle = ray_judge.start_judge(env={
            "LLM_JUDGE_NAME": "litellm:openai/judge-rl", "LLM_JUDGE_NUM_WORKERS": "1",
            "LLM_JUDGE_CACHE_SIZE": "0", "OPENAI_API_BASE": f"{fake.url}/v1",
            "OPENAI_API_KEY": "sk-test-netns", "LITELLM_OFFLINE_MODE": "true",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        ray.get(handle.ping.remote(), timeout=120)
        print("READY", ray.get_runtime_context().gcs_address, flush=True)
        sys.stdin.read()
        ray_judge.stop_judge()
    ray.shutdown()


def reward(url: str) -> None:
    from openrlhf.utils import agent

    log: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log.append(record.getMessage())

    agent.logger.addHandler(Keep())
    agent.logger.setLevel(logging.INFO)
    # The HTTP client SingleTurnAgentExecutor.execute calls for --reward.remote_url;
    # execute itself would need a tokenizer and a vLLM engine stand-in around it.
    executor = agent.SingleTurnAgentExecutor(remote_rm_url=url)
    try:
        (answer,) = asyncio.run(executor._fetch_rewards_via_http(
            ["Capital of France? Paris."], ["Capital of France? "], ["Paris"]))
    except RuntimeError as exc:  # OpenRLHF's "gave up after its retries"
        print(json.dumps({"error": str(exc), "log": log}), flush=True)
        return
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    {"judge": judge, "reward": reward}[sys.argv[1]](*sys.argv[2:])
