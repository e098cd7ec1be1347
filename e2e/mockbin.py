"""Starting the mock upstream binary (`mock-upstream`, crates/mock-upstream)
from the end-to-end tests and scripts. Standard library only.

The binary: env MOCK_UPSTREAM_BIN, else the one next to the tollgate binary
(env TOLLGATE_BIN, default /root/.cache/tollgate-target/debug/tollgate:
cargo builds both into the same directory).
"""

import os
import select
import subprocess
from pathlib import Path

DEFAULT_TOLLGATE_BIN = "/root/.cache/tollgate-target/debug/tollgate"
STARTUP_TIMEOUT = 30.0  # seconds for the mock to print its port


def binary():
    if os.environ.get("MOCK_UPSTREAM_BIN"):
        return os.environ["MOCK_UPSTREAM_BIN"]
    return str(Path(os.environ.get("TOLLGATE_BIN", DEFAULT_TOLLGATE_BIN)).parent / "mock-upstream")


def tail(path, lines=60):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def start(log_path, args, env=None):
    """Runs `mock-upstream --listen 127.0.0.1:0 ARGS…` (stderr to
    `log_path`); returns (process, the port it printed on its first line)."""
    path = binary()
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no mock-upstream binary at {path} (cargo build -p mock-upstream, or set MOCK_UPSTREAM_BIN)")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [path, "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
    line = proc.stdout.readline().decode().strip() if ready else ""
    if not line.isdigit():
        proc.kill()
        proc.wait(timeout=STARTUP_TIMEOUT)
        raise RuntimeError(f"mock-upstream {' '.join(args)} did not report its port: {line!r}\n{tail(log_path)}")
    return proc, int(line)
