#!/usr/bin/env bash
# Prints the path of a Python venv under $WORK named NAME with the packages
# of REQUIREMENTS installed, made (or remade when the file changed) first;
# installs python3-venv without questions when the machine lacks it.
#
#   python="$(suites/harness/venv.sh "$WORK" kafka suites/kafka/requirements.txt)/bin/python"
set -euo pipefail
work="$1" name="$2" requirements="$3"
python3 -c 'import venv, ensurepip' 2>/dev/null || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
}
mkdir -p "$work"
if ! cmp -s "$requirements" "$work/$name-venv/requirements.txt" 2>/dev/null; then
  python3 -m venv "$work/$name-venv" >&2
  "$work/$name-venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$work/$name-venv/requirements.txt"
fi
echo "$work/$name-venv"
