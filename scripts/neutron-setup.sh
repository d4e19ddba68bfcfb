#!/usr/bin/env bash
# A real OpenStack Neutron API server for the Neutron IPAM's tests and the lab: neutron 29.0.0 from PyPI
# in a venv of its own (342 MiB: never in podnet's), pinned with OpenStack's upper-constraints, gunicorn to
# serve its WSGI app.  Cached OUTSIDE the checkout:
#   ${PODNET_NEUTRON_CACHE:-$HOME/.cache/podnet/neutron}/<version>/venv
# ~40 s once per machine; a second run takes no time.  Prints the venv's path.
set -euo pipefail
cd "$(dirname "$0")/.."
version="29.0.0"                 # = lab/neutron.py NEUTRON_VERSION (a unit test keeps them equal)
cache="${PODNET_NEUTRON_CACHE:-$HOME/.cache/podnet/neutron}/$version"
if [ -f "$cache/venv/.complete" ] && "$cache/venv/bin/gunicorn" --version >/dev/null 2>&1; then echo "$cache/venv"; exit 0; fi
mkdir -p "$cache"
rm -rf "$cache/venv"          # a half-made one (no .complete): a venv cannot be moved, so it is made in place
echo "neutron-setup: installing neutron $version into $cache — once per machine" >&2
start=$(date +%s)
/usr/bin/python3 -m venv "$cache/venv"
"$cache/venv/bin/pip" install -q --disable-pip-version-check -c scripts/neutron/upper-constraints.txt \
  "neutron==$version" gunicorn PyMySQL pyroute2 >&2
touch "$cache/venv/.complete"
echo "neutron-setup: done in $(( $(date +%s) - start )) s" >&2
echo "$cache/venv"
