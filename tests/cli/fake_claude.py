#!/usr/bin/env python3
"""A stand-in ``claude`` for the faults the real CLI cannot be made to show.

It accepts the real CLI's command line and reads the prompt from stdin; what it does
is chosen by ``FAKE_CLAUDE_MODE`` (the tests' wrapper script sets it, since the backend
builds the child's environment from scratch):

* ``ok``: print a success result (``FAKE_CLAUDE_TEXT``, default ``SCORE: 7``).
* ``echo``: like ``ok``, and write argv, environment, cwd and stdin to ``FAKE_CLAUDE_ECHO``.
* ``garbage``: print text that is not JSON, exit 0.
* ``crash``: print a stack-trace-like message with credentials in it on stderr, exit 1.
* ``old_usage_limit``: an older CLI's ``Claude AI usage limit reached|<epoch>`` result.
* ``grandchild_hang``: start a grandchild holding stdout, write both pids, hang.
* ``ignore_term``: ignore SIGTERM, write the pid, hang (only SIGKILL ends it).
* ``stray_grandchild``: leave a sleeping grandchild holding stdout, print a success result.
* ``refresh``: behave like a CLI that ignores ``CLAUDE_SECURESTORAGE_CONFIG_DIR`` and
  refreshes the OAuth tokens: rename a new credentials file over the private one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

MODE = os.environ.get("FAKE_CLAUDE_MODE", "ok")


def result(text: str, *, is_error: bool = False) -> str:
    return json.dumps({
        "type": "result", "subtype": "success", "is_error": is_error, "result": text,
        "api_error_status": 429 if is_error else None, "duration_ms": 12, "num_turns": 1,
        "total_cost_usd": 0 if is_error else 0.00123,
        "usage": {"input_tokens": 0 if is_error else 100, "output_tokens": 0 if is_error else 7},
    })


def write_pids(*pids: int) -> None:
    with open(os.environ["FAKE_CLAUDE_PIDFILE"], "w") as f:
        f.write(" ".join(map(str, pids)))


def sleeper() -> subprocess.Popen[bytes]:
    # Inherits our stdout: a reader waiting for EOF waits for this one too.
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def main() -> int:
    stdin = sys.stdin.read()
    if MODE == "garbage":
        print("<html>502 Bad Gateway</html>\nnot json {")
        return 0
    if MODE == "crash":
        key = os.environ.get("ANTHROPIC_API_KEY", "")
        print("x" * 5000 + f"\nTypeError: fetch failed\n  at request (auth: {key}, "
              "Authorization: Bearer abcdefghijklmnop, token sk-ant-oat01-LEAKEDTOKEN123)"
              "\nfatal: the end of stderr", file=sys.stderr)
        return 1
    if MODE == "old_usage_limit":
        print(result(f"Claude AI usage limit reached|{os.environ['FAKE_CLAUDE_RESET']}",
                     is_error=True))
        return 1
    if MODE == "grandchild_hang":
        write_pids(os.getpid(), sleeper().pid)
        time.sleep(600)
    if MODE == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        write_pids(os.getpid())
        time.sleep(600)
    if MODE == "stray_grandchild":
        write_pids(os.getpid(), sleeper().pid)
    if MODE == "refresh":
        private = os.path.join(os.environ["CLAUDE_CONFIG_DIR"], ".credentials.json")
        with open(private + ".tmp", "w") as f:
            json.dump({"claudeAiOauth": {"accessToken": "sk-ant-oat01-REFRESHED",
                                         "refreshToken": "sk-ant-ort01-ROTATED"}}, f)
        os.replace(private + ".tmp", private)  # what CLI 2.1.332 does to a symlink
    if MODE == "echo":
        with open(os.environ["FAKE_CLAUDE_ECHO"], "w") as f:
            json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd(),
                       "cwd_entries": os.listdir("."), "stdin": stdin}, f)
    print(result(os.environ.get("FAKE_CLAUDE_TEXT", "Fine.\nSCORE: 7")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
