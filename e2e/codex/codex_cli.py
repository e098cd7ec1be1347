"""Running the real Codex CLI (`codex exec`) against a Responses API server,
hermetically: a fresh CODEX_HOME and HOME per run, a custom model provider,
nothing that reaches the internet. Used by test_codex.py and record_fixtures.py.

Standard library only.
"""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALL_SH = HERE / "install.sh"

# Where install.sh puts the CLI (CODEX_PREFIX overrides both).
DEFAULT_PREFIX = Path(os.environ.get("HOME", "/root")) / ".cache" / "tollgate-codex"
KEY_ENV = "TOLLGATE_API_KEY"  # the provider's env_key: Codex sends it as Authorization: Bearer
CODEX_TIMEOUT = 120  # seconds for one `codex exec` run
INSTALL_TIMEOUT = 900  # seconds for install.sh (npm)

# The run's prompt; the mocks' answers do not depend on it, the marker only
# tells runs apart in the upstream's log.
PROMPT = "Run `echo tollgate-codex-ok` in the shell and tell me what it printed. (run {marker})"


def default_binary():
    prefix = Path(os.environ.get("CODEX_PREFIX") or DEFAULT_PREFIX)
    return prefix / "node_modules" / ".bin" / "codex"


def find_codex():
    """The codex executable ($CODEX_BIN, or install.sh's), or None."""
    given = os.environ.get("CODEX_BIN")
    if given:
        return given if os.access(given, os.X_OK) else None
    path = default_binary()
    return str(path) if os.access(path, os.X_OK) else None


def install(log_path):
    """Runs install.sh (bounded); returns (path or None, exit code)."""
    if shutil.which("bash") is None:
        return None, "no bash"
    env = {k: v for k, v in os.environ.items() if k != "CODEX_BIN"}
    try:
        with open(log_path, "wb") as err:
            done = subprocess.run(
                ["bash", str(INSTALL_SH)],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                timeout=INSTALL_TIMEOUT,
                env=env,
            )
    except subprocess.TimeoutExpired:
        return None, f"timeout after {INSTALL_TIMEOUT}s"
    lines = done.stdout.decode().strip().splitlines()
    path = lines[-1] if lines else ""
    if done.returncode != 0 or not path or not os.access(path, os.X_OK):
        return None, done.returncode
    return path, 0


def version(codex):
    try:
        out = subprocess.run([codex, "--version"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        return out.stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def config_toml(base_url, model, extra=""):
    """config.toml for CODEX_HOME: the `tollgate` provider over the Responses
    API, no retries (a failure fails the run at once), nothing that calls
    out: no update check, no analytics, no plugin marketplace sync (which
    otherwise runs `git ls-remote https://github.com/openai/plugins.git`).
    No approvals; no sandbox (the only command is the mock's `echo`)."""
    return f"""\
{extra}
model = "{model}"
model_provider = "tollgate"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.tollgate]
name = "Tollgate"
base_url = "{base_url}"
env_key = "{KEY_ENV}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 60000

[analytics]
enabled = false

[features]
plugins = false
"""


def codex_env(home, api_key):
    """The environment of a run: no inherited OpenAI/Codex/Tollgate settings,
    no proxies, HOME and CODEX_HOME in the run's folder."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "CODEX_", "TOLLGATE_", "RUST_LOG", "OTEL_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.update(
        HOME=str(home),
        CODEX_HOME=str(home / ".codex"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        **{KEY_ENV: api_key},
    )
    return env


@dataclass
class Run:
    returncode: object  # int, or "timeout"
    stdout: str
    stderr: str
    events: list  # the --json events
    last_message: str  # -o FILE
    folder: Path

    def items(self, kind):
        """The completed items of one type (agent_message, command_execution, reasoning, error, ...)."""
        done = [e.get("item", {}) for e in self.events if e.get("type") == "item.completed"]
        return [item for item in done if item.get("type") == kind]

    def turn_usage(self):
        done = [e for e in self.events if e.get("type") == "turn.completed"]
        return done[-1].get("usage") if done else None

    def describe(self):
        return f"codex exit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"


def run_codex(codex, folder, base_url, model, api_key, prompt, timeout=CODEX_TIMEOUT, extra_config=""):
    """One `codex exec --json` run in `folder` (created); returns a Run.
    `extra_config`: more top-level config.toml lines (before the tables)."""
    folder = Path(folder)
    home, work = folder / "home", folder / "work"
    (home / ".codex").mkdir(parents=True)
    work.mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(config_toml(base_url, model, extra_config))
    last = folder / "last_message.txt"
    cmd = [
        codex,
        "exec",
        "--json",
        "--ephemeral",
        "--skip-git-repo-check",
        "--color",
        "never",
        "-C",
        str(work),
        "-o",
        str(last),
        prompt,
    ]
    try:
        done = subprocess.run(
            cmd,
            cwd=work,
            env=codex_env(home, api_key),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", e.stdout or b"", e.stderr or b""
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
    try:
        last_message = last.read_text()
    except OSError:
        last_message = ""
    run = Run(rc, stdout, stderr, events, last_message, folder)
    (folder / "run.txt").write_text(run.describe())
    return run
