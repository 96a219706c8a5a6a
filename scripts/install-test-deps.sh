#!/bin/sh
# Installs what the end-to-end tests need beyond npm: Debian's chromium and prometheus (promtool comes with it),
# torch (CPU; the tests of torch tensors run for real) and cloudpickle (NOS's pickler, for the byte-level tests),
# and the Python client from this tree. Idempotent: a second run installs nothing.
set -eu
cd "$(dirname "$0")/.."

missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=""; fi
  echo "install-test-deps: apt-get install$missing"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

python3 -c 'import numpy, pytest' 2>/dev/null || { echo "install-test-deps: python3 needs numpy and pytest" >&2; exit 1; }
# pip finds torch's CPU wheel in this machine's local wheel folder; each is skipped when it imports already.
for module in torch cloudpickle; do
  if ! python3 -c "import $module" 2>/dev/null; then
    echo "install-test-deps: pip install $module"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$module"
  fi
done
if [ -d clients/python ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore ./clients/python
fi
