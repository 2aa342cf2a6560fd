"""Where the Claude Code CLI runs: its executable, its environment, its private state.

Each :class:`~ray_judge.backends.ccode.ClaudeCodeBackend` owns one :class:`CliHome`, a
private temporary tree (``HOME``, ``CLAUDE_CONFIG_DIR``, an empty working directory and
one ``CLAUDE_CODE_TMPDIR`` per call), so concurrent CLI processes of different workers
share no state, and no run leaves files behind (CLI 2.1.332 leaves a
``fswatch-probe-*`` directory in its temp dir on every run).

The user's own login survives the isolation. ``claude login`` keeps a subscription's
OAuth tokens in ``<config dir>/.credentials.json`` on Linux (``~/.claude`` unless
``CLAUDE_CONFIG_DIR`` is set), and a Console login's key as ``primaryApiKey`` in the
global config (``~/.claude.json``, or ``$CLAUDE_CONFIG_DIR/.claude.json``). Measured
with CLI 2.1.332:

* ``CLAUDE_SECURESTORAGE_CONFIG_DIR`` (undocumented) moves only the credentials store.
  Pointed at the user's config dir, the CLI reads the user's tokens and, when they
  expire, writes the refreshed ones back into the user's own file (a temp file renamed
  over it), exactly as the user's interactive CLI does. That is what we set.
* A symlink to the credentials file is not enough on its own: the refresh renames a new
  file over the *link*, so the user's file keeps a refresh token that has just been
  rotated away. We still place the link, for CLIs that ignore the variable, and copy a
  file that replaced it back to the user's store after each call.
* The global config cannot be shared: every CLI start rewrites it. The private copy gets
  the few account keys (``primaryApiKey``, ``oauthAccount``, ...) once, at start-up.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path

from ..errors import BackendUnavailableError

__all__ = ["CliHome", "child_env", "resolve_cli", "user_credentials_dir"]

logger = logging.getLogger(__name__)

_CREDENTIALS = ".credentials.json"
_GLOBAL_CONFIG = ".claude.json"
_ACCOUNT_KEYS = ("primaryApiKey", "oauthAccount", "customApiKeyResponses",
                 "hasCompletedOnboarding", "userID")

# Copied from the caller's environment: provider settings (API keys, OAuth token, base
# URL, Bedrock/Vertex), proxies and CA bundles (corporate networks), locale.
_FORWARD_PREFIXES = ("ANTHROPIC_", "CLAUDE_CODE_", "AWS_", "VERTEX_REGION_", "DISABLE_", "LC_")
_FORWARD_NAMES = frozenset({
    "PATH", "LANG", "USER", "LOGNAME", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy", "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "CLOUD_ML_REGION", "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG", "MAX_THINKING_TOKENS",
})
# Bedrock and Vertex credentials found through HOME, which the CLI no longer shares.
_HOME_FILES = (("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
               ("AWS_CONFIG_FILE", ".aws/config"), ("CLOUDSDK_CONFIG", ".config/gcloud"))
# A parent Claude Code session's own wiring (IDE port, entrypoint) is not ours to inherit.
_NEVER = frozenset({"CLAUDE_CODE_SSE_PORT", "CLAUDE_CODE_ENTRYPOINT"})
_FIXED = {
    "CLAUDE_CODE_MAX_RETRIES": "0",  # the CLI retries 10 times over ~3 min; we retry
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    # "resets 12:53pm (UTC)": the CLI prints a usage limit's reset time in its own zone.
    "TZ": "UTC",
}


def resolve_cli(configured: str, environ: Mapping[str, str], backend: str | None = None) -> str:
    """The absolute path of the executable ``CLAUDE_CLI_PATH`` names (a path, or a name on PATH).

    Raises:
        BackendUnavailableError: it does not exist, is not a file, or is not executable.
    """
    hint = "set CLAUDE_CLI_PATH or install it: npm install -g @anthropic-ai/claude-code"
    if os.sep in configured or configured.startswith("~"):
        found = str(Path(configured).expanduser().absolute())
    else:
        on_path = shutil.which(configured, path=environ.get("PATH", os.defpath))
        if on_path is None:
            raise BackendUnavailableError(
                f"Claude Code CLI {configured!r} (CLAUDE_CLI_PATH) not found on PATH; {hint}",
                backend=backend)
        found = str(Path(on_path).absolute())
    problem = (f"does not exist; {hint}" if not os.path.exists(found)
               else "is not a file" if not os.path.isfile(found)
               else "is not executable" if not os.access(found, os.X_OK)
               else None)
    if problem:
        raise BackendUnavailableError(
            f"Claude Code CLI: CLAUDE_CLI_PATH={configured!r} ({found}) {problem}",
            backend=backend)
    return found


def user_credentials_dir(environ: Mapping[str, str]) -> Path:
    """The directory holding the user's ``.credentials.json`` (``claude login`` on Linux)."""
    for name in ("CLAUDE_SECURESTORAGE_CONFIG_DIR", "CLAUDE_CONFIG_DIR"):
        if environ.get(name):
            return Path(environ[name]).expanduser().absolute()
    return Path(environ.get("HOME") or Path.home()) / ".claude"


def _user_global_config(environ: Mapping[str, str]) -> Path:
    if environ.get("CLAUDE_CONFIG_DIR"):
        return Path(environ["CLAUDE_CONFIG_DIR"]).expanduser() / _GLOBAL_CONFIG
    return Path(environ.get("HOME") or Path.home()) / _GLOBAL_CONFIG


def child_env(environ: Mapping[str, str], *, home: Path, config_dir: Path,
              credentials_dir: Path) -> dict[str, str]:
    """The CLI's whole environment, built from ``environ`` (never inherited wholesale)."""
    env = {
        k: v for k, v in environ.items()
        if (k in _FORWARD_NAMES or k.startswith(_FORWARD_PREFIXES)) and k not in _NEVER
        # *_FILE_DESCRIPTOR names a descriptor of the caller, which the child does not get.
        and not k.endswith("_FILE_DESCRIPTOR")
    }
    env.setdefault("PATH", os.defpath)
    user_home = Path(environ.get("HOME") or Path.home())
    for name, relative in _HOME_FILES:
        if name not in env and (user_home / relative).exists():
            env[name] = str(user_home / relative)
    # Judging needs no extended thinking; a user who wants it sets this to 0.
    env.setdefault("CLAUDE_CODE_DISABLE_THINKING", "1")
    env.update(_FIXED)
    env.update(HOME=str(home), CLAUDE_CONFIG_DIR=str(config_dir),
               CLAUDE_SECURESTORAGE_CONFIG_DIR=str(credentials_dir))
    return env


class CliHome:
    """A backend's private directory tree; :meth:`cleanup` (or garbage collection) removes it."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ray_judge_ccode_"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.root, True)
        self.home, self.config_dir = self.root / "home", self.root / "config"
        self.cwd, self._tmp = self.root / "cwd", self.root / "tmp"
        for path in (self.home, self.config_dir, self.cwd, self._tmp):
            path.mkdir(mode=0o700)
        self._calls = itertools.count(1)
        self.credentials_dir = user_credentials_dir(environ)
        self._user_credentials = self.credentials_dir / _CREDENTIALS
        self._link = self.config_dir / _CREDENTIALS
        self._linked = self._user_credentials.is_file()
        if self._linked:
            self._link.symlink_to(self._user_credentials)
        self._seed_global_config(_user_global_config(environ))
        self.env = child_env(environ, home=self.home, config_dir=self.config_dir,
                             credentials_dir=self.credentials_dir)

    def _seed_global_config(self, source: Path) -> None:
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # no Console login or account info to carry over
        if not isinstance(data, dict):
            return
        seed = {k: data[k] for k in _ACCOUNT_KEYS if k in data}
        target = self.config_dir / _GLOBAL_CONFIG
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(seed, f)

    def call_dir(self) -> Path:
        """A fresh temp dir for one CLI process (its ``CLAUDE_CODE_TMPDIR``)."""
        path = self._tmp / str(next(self._calls))
        path.mkdir(mode=0o700)
        return path

    def sync_credentials(self) -> None:
        """After a call: tokens a CLI refreshed into our private dir go back to the user's."""
        link = self._link
        if not self._linked or link.is_symlink() or not link.is_file():
            return
        try:
            fd, staged = tempfile.mkstemp(prefix=f"{_CREDENTIALS}.", dir=self.credentials_dir)
            with os.fdopen(fd, "wb") as f:  # mkstemp: mode 0600, like the CLI's own file
                f.write(link.read_bytes())
            os.replace(staged, self._user_credentials)  # atomic, as the CLI itself writes
            link.unlink()
            link.symlink_to(self._user_credentials)
        except OSError as exc:
            logger.warning("could not copy refreshed Claude credentials back to %s: %s",
                           self._user_credentials, exc)

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self._finalizer()
