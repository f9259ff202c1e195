# Sourced by scripts/demo and scripts/test: a project venv in .venv with the given extras.
# Works on a fresh Debian with only Python 3.11 (installs python3-venv first when root needs it).
# Versions come from constraints.txt (generated from pyproject.toml, see its header), the same
# pins the Dockerfile installs; tests/test_constraints.py fails when the two drift apart.
ensure_venv() {
  local extras="$1"
  if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
      rm -rf .venv
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
      else
        echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)" >&2
        return 1
      fi
    fi
  fi
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
}
