#!/usr/bin/env bash
# Installs the Debian packages whale builds and tests with, skipping what is present.
# Usage: scripts/deps.sh [--test]   (--test adds the Python tooling the test suite uses)
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config
  nlohmann-json3-dev libcli11-dev libhwy-dev libcpp-httplib-dev libpcre2-dev libssl-dev libxxhash-dev libedit-dev libcurl4-openssl-dev
  libgtest-dev libgmock-dev
)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(clang libclang-rt-14-dev python3 python3-pip curl chromium)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The server tests drive whale with the official OpenAI, Anthropic and Ollama clients, and the
# chat page with Playwright (driving Debian's chromium); structured output is validated with
# jsonschema (PyPI).
for pkg in openai anthropic ollama playwright jsonschema; do
  if [[ "${1:-}" == "--test" ]] && ! python3 -c "import $pkg" 2>/dev/null; then
    echo "deps: installing the $pkg Python package"
    python3 -m pip install --quiet $pkg 2>/dev/null || python3 -m pip install --quiet --break-system-packages $pkg
  fi
done
# Trained tokenizers are checked against HF `tokenizers` (PyPI).
if [[ "${1:-}" == "--test" ]] && ! python3 -c "import tokenizers" 2>/dev/null; then
  echo "deps: installing the tokenizers Python package"
  python3 -m pip install --quiet tokenizers 2>/dev/null || python3 -m pip install --quiet --break-system-packages tokenizers
fi
