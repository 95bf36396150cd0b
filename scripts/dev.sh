#!/usr/bin/env bash
# One entry point for a fresh Debian machine (Python 3.11+, Node, apt):
#   scripts/dev.sh demo [preau demo options]   install everything, run the demo
#   scripts/dev.sh test [pytest options]       install everything, run all tests
#   scripts/dev.sh setup                       install only
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[preau]\033[0m %s\n' "$*" >&2; }

pick_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  say "Python 3.11 or newer is needed (Raspberry Pi OS bookworm ships 3.11)"; exit 1
}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

setup() {
  if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    say "installing mosquitto (apt)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq mosquitto >/dev/null
  fi
  # The city's PostgreSQL tests (initdb, pg_ctl) and the pages' browser tests.
  local missing=()
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "installing nodejs and npm (apt)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
  fi
  local py stamp want
  py=$(pick_python)
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $py"
    "$py" -m venv .venv
  fi
  stamp=.venv/.preau-installed
  want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python packages into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
  fi
  if [ ! -d node_modules/@micropython/micropython-webassembly-pyscript ] ||
     [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "installing the MicroPython VM (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) setup ;;
  demo) setup; exec .venv/bin/preau demo "$@" ;;
  test) setup; exec .venv/bin/python -m pytest -q "$@" ;;
  *) sed -n '2,5p' "$0"; exit 2 ;;
esac
