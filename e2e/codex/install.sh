#!/usr/bin/env bash
# Installs the OpenAI Codex CLI from the npm registry into a cache folder
# outside the repository (idempotent) and prints the path of `codex`.
#
#   bash e2e/codex/install.sh        # prints e.g. /root/.cache/tollgate-codex/node_modules/.bin/codex
#
# Environment:
#   CODEX_PREFIX   install folder (default: $HOME/.cache/tollgate-codex)
#   CODEX_VERSION  npm version (default: the pinned version below)
#
# `@openai/codex` is a small Node launcher (bin/codex.js) plus, as npm
# optional dependencies, one native Rust binary per platform, published as
# versions of the same package (`@openai/codex-linux-x64` is an alias of
# `@openai/codex@<version>-linux-x64`). It has no install scripts and
# downloads nothing: everything comes from the npm registry. If npm skipped
# the optional dependency, this script installs the linux-x64 (or arm64)
# package explicitly. Progress goes to stderr; stdout is only the path.
set -euo pipefail

PREFIX="${CODEX_PREFIX:-${HOME:-/root}/.cache/tollgate-codex}"
VERSION="${CODEX_VERSION:-0.169.0}"
CODEX="$PREFIX/node_modules/.bin/codex"
INSTALL_TIMEOUT="${CODEX_INSTALL_TIMEOUT:-600}"

case "$(uname -m)" in
    x86_64 | amd64) PLATFORM=linux-x64 ;;
    aarch64 | arm64) PLATFORM=linux-arm64 ;;
    *) echo "install.sh: unsupported machine $(uname -m)" >&2; exit 2 ;;
esac

# `codex --version` prints "codex-cli 0.169.0".
installed_version() {
    timeout 60 "$CODEX" --version 2>/dev/null | awk '{print $NF}' || true
}

# Already there, at the wanted version, and runnable: nothing to do.
if [ -x "$CODEX" ]; then
    have="$(installed_version)"
    if [ -n "$have" ] && { [ "$have" = "$VERSION" ] || [ "$VERSION" = "latest" ]; }; then
        echo "$CODEX"
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
echo "install.sh: npm install @openai/codex@$VERSION into $PREFIX" >&2
# --include=optional: the platform binary is an optional dependency.
timeout "$INSTALL_TIMEOUT" npm install --prefix "$PREFIX" --no-audit --no-fund \
    --include=optional --save-exact "@openai/codex@$VERSION" >&2

if [ ! -x "$CODEX" ]; then
    echo "install.sh: npm finished but $CODEX is missing" >&2
    exit 4
fi
# The launcher looks for node_modules/@openai/codex-$PLATFORM; when npm left
# it out (optional dependencies omitted by config), add it by its alias.
if [ ! -d "$PREFIX/node_modules/@openai/codex-$PLATFORM" ]; then
    echo "install.sh: adding the platform package @openai/codex-$PLATFORM" >&2
    timeout "$INSTALL_TIMEOUT" npm install --prefix "$PREFIX" --no-audit --no-fund --no-save \
        "@openai/codex-$PLATFORM@npm:@openai/codex@$VERSION-$PLATFORM" >&2
fi
have="$(installed_version)"
if [ -z "$have" ]; then
    echo "install.sh: $CODEX does not run:" >&2
    timeout 60 "$CODEX" --version >&2 || true
    exit 5
fi
if [ "$VERSION" != "latest" ] && [ "$have" != "$VERSION" ]; then
    echo "install.sh: installed codex $have, wanted $VERSION" >&2
    exit 6
fi
echo "install.sh: codex-cli $have" >&2
echo "$CODEX"
