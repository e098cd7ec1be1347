#!/usr/bin/env bash
# Installs the Claude Code CLI from the npm registry into a cache folder
# outside the repository (idempotent) and prints the path of `claude`.
#
#   bash e2e/claude_code/install.sh            # prints e.g. /root/.cache/tollgate-claude-code/node_modules/.bin/claude
#
# Environment:
#   CLAUDE_CODE_PREFIX   install folder (default: $HOME/.cache/tollgate-claude-code)
#   CLAUDE_CODE_VERSION  npm version spec (default: the pinned version below)
#
# The package's postinstall (install.cjs) only hard-links the platform binary
# from its npm optional dependency (@anthropic-ai/claude-code-linux-x64, …)
# over bin/claude.exe: nothing is downloaded from anywhere but the npm
# registry. Progress goes to stderr; stdout is only the path.
set -euo pipefail

PREFIX="${CLAUDE_CODE_PREFIX:-${HOME:-/root}/.cache/tollgate-claude-code}"
VERSION="${CLAUDE_CODE_VERSION:-2.1.331}"
CLAUDE="$PREFIX/node_modules/.bin/claude"
INSTALL_TIMEOUT="${CLAUDE_CODE_INSTALL_TIMEOUT:-600}"

# Already there, at the wanted version, and runnable: nothing to do.
if [ -x "$CLAUDE" ]; then
    have="$(timeout 60 "$CLAUDE" --version 2>/dev/null | awk '{print $1}' || true)"
    if [ "$have" = "$VERSION" ] || [ "$VERSION" = "latest" -a -n "$have" ]; then
        echo "$CLAUDE"
        exit 0
    fi
fi

if ! command -v npm >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "install.sh: npm missing; installing Debian's nodejs and npm" >&2
        timeout "$INSTALL_TIMEOUT" apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive timeout "$INSTALL_TIMEOUT" \
            apt-get install -y -qq nodejs npm >&2
    else
        echo "install.sh: npm is not installed and cannot be installed here" >&2
        exit 3
    fi
fi

mkdir -p "$PREFIX"
echo "install.sh: npm install @anthropic-ai/claude-code@$VERSION into $PREFIX" >&2
# --include=optional: the platform binary is an optional dependency.
# --foreground-scripts: the postinstall's messages show up in the log.
timeout "$INSTALL_TIMEOUT" npm install --prefix "$PREFIX" --no-audit --no-fund \
    --include=optional --foreground-scripts \
    "@anthropic-ai/claude-code@$VERSION" >&2

if [ ! -x "$CLAUDE" ]; then
    echo "install.sh: npm finished but $CLAUDE is missing" >&2
    exit 4
fi
# The postinstall replaces a small placeholder with the native binary; if it
# did not run (scripts disabled), do what it does: run it.
if [ "$(stat -L -c %s "$CLAUDE")" -lt 100000 ]; then
    echo "install.sh: running the package's postinstall (install.cjs)" >&2
    (cd "$PREFIX/node_modules/@anthropic-ai/claude-code" && timeout 120 node install.cjs >&2)
fi
if ! timeout 60 "$CLAUDE" --version >&2; then
    echo "install.sh: $CLAUDE does not run" >&2
    exit 5
fi
echo "$CLAUDE"
