# Sourced by the scripts: makes ./.venv (from PyPI only) and installs the pinned requirements file given
# as $1 into it, once per change of that file.
python=${PYTHON:-python3}
if [ ! -x .venv/bin/pip ]; then
  rm -rf .venv
  if ! "$python" -m venv .venv 2>/dev/null; then
    # Debian's python3 has no ensurepip without python3-venv: make the venv bare and fetch pip from PyPI.
    rm -rf .venv
    "$python" -m venv --without-pip .venv
    .venv/bin/python scripts/bootstrap_pip.py
  fi
fi
stamp=.venv/.installed-$(basename "$1")
if [ ! -f "$stamp" ] || ! cmp -s "$1" "$stamp"; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$1"
  cp "$1" "$stamp"
fi
