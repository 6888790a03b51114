#!/usr/bin/env bash
# Idempotent set-up of everything the project needs, inside the repository:
#   .venv/          Python 3.11 virtualenv with the pinned packages (requirements.lock), the relay
#                   and the SDK (sdk/, a distribution of its own) installed editable
#   .venv-tools/    slither-analyzer (slither, slither-mutate), pinned in requirements-tools.lock
#   node_modules/   solc-js, anvil, OpenZeppelin Contracts, solhint, prettier (package-lock.json)
#   .solcx/         solc-v<version> -> tools/solc.js, found by py-solc-x through SOLCX_BINARY_PATH
# `source .venv/bin/activate` afterwards puts ape, anvil and the compiler on hand.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
stamps=.stamps
mkdir -p "$stamps"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

checksum() { cat "$@" | sha256sum | cut -c1-16; }

# --- Python -----------------------------------------------------------------
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
py_sum=$(checksum requirements.lock pyproject.toml sdk/pyproject.toml)
if [ ! -x .venv/bin/python ] || [ "$(cat $stamps/python 2>/dev/null)" != "$py_sum" ]; then
  say "Python packages (.venv)"
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  # pip's own status decides (pipefail); the filter only drops a mirror warning, and may print nothing.
  pip_install() { .venv/bin/python -m pip install --quiet "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
  pip_install --upgrade pip
  pip_install -r requirements.lock
  pip_install --no-deps -e .
  pip_install --no-deps -e sdk/
  .venv/bin/python -c "import ape, ape_solidity, ape_foundry, fastapi, sqlalchemy, loyalty_sdk"  # fails loudly if incomplete
  echo "$py_sum" > $stamps/python
fi

# --- Static analysis (.venv-tools: slither-analyzer, requirements-tools.lock) ----------------
# A venv of its own: slither's dependency solc-select installs a `solc` command that downloads
# compilers; in .venv/bin it would be first on PATH, and py-solc-x takes `which solc` as its default.
tools_sum=$(checksum requirements-tools.lock)
if [ ! -x .venv-tools/bin/slither ] || [ "$(cat $stamps/tools 2>/dev/null)" != "$tools_sum" ]; then
  say "Static analysis tools (.venv-tools)"
  [ -x .venv-tools/bin/python ] || "$python" -m venv .venv-tools
  .venv-tools/bin/python -m pip install --quiet -r requirements-tools.lock 2>&1 | { grep -v '^WARNING: Location' || true; }
  .venv-tools/bin/slither --version > /dev/null
  echo "$tools_sum" > $stamps/tools
fi

# --- npm tools --------------------------------------------------------------
npm_sum=$(checksum package-lock.json)
if [ ! -d node_modules ] || [ "$(cat $stamps/npm 2>/dev/null)" != "$npm_sum" ]; then
  say "npm packages (node_modules)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$npm_sum" > $stamps/npm
fi

# --- Solidity compiler and anvil ---------------------------------------------
solc_version=$(node -p "require('solc/package.json').version")
mkdir -p .solcx
ln -sfn ../tools/solc.js ".solcx/solc-v$solc_version"
ln -sfn ../../node_modules/.bin/anvil .venv/bin/anvil
if ! grep -q SOLCX_BINARY_PATH .venv/bin/activate; then
  printf '\n# loyalty-payment: the solc-js compiler front (tools/solc.js)\nexport SOLCX_BINARY_PATH="%s/.solcx"\n' "$root" >> .venv/bin/activate
fi

# --- Contracts ----------------------------------------------------------------
export SOLCX_BINARY_PATH="$root/.solcx" PATH="$root/.venv/bin:$PATH"
# tools/build.py: the stamp (a checksum of ape-config.yaml and contracts/**/*.sol), the forced compile
# and the ABI export, shared with the contract tests' session start (tests/conftest.py).
if ! python tools/build.py --check; then
  say "Compiling contracts"
  python tools/build.py --force > $stamps/compile.log 2>&1 || { cat $stamps/compile.log >&2; exit 1; }
fi
# ape-solidity unpacks dependencies (OpenZeppelin, 300+ files) into contracts/.cache when it builds
# import remappings; Ape lists at most 500 files of the contracts folder, so that copy can hide our
# own sources (contracts/test/) from `project.<Name>`. Compilation recreates it when it needs it.
rm -rf contracts/.cache

# --- Browser for the admin-page tests (Debian's chromium, driven by Playwright) -----
if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  say "Chromium (Debian package, for the browser tests)"
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q chromium > $stamps/apt.log 2>&1 || { apt-get update -q > /dev/null && apt-get install -y -q chromium > $stamps/apt.log 2>&1; } || { cat $stamps/apt.log >&2; exit 1; }
  else
    sudo apt-get install -y -q chromium > $stamps/apt.log 2>&1 || { echo "install the 'chromium' package (sudo apt-get install chromium)" >&2; exit 1; }
  fi
fi
