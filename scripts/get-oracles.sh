#!/usr/bin/env bash
# Fetch the oracle tools the test suite compares against.
#
# - thin-provisioning-tools 1.x (Rust): unpacked into <repo>/.tools/tpt by the shared script
#   ../shared/tools/get-thin-tools-1.x.sh (CI clones the repo next to a copy of shared/).
# - thin-provisioning-tools 0.9.0 (C++): from the distribution (/usr/sbin/thin_*); .ci/run
#   installs it with apt-get; this script only reports whether it is present.
#
# Idempotent: the shared script exits early when pdata_tools is already unpacked. A missing
# shared/ directory or a failed download is reported and is not an error: the oracle tests
# then skip visibly (test/helpers/oracle.ts gives the reason).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared="$repo/../shared"
dest="$repo/.tools/tpt"
getter="$shared/tools/get-thin-tools-1.x.sh"

if [ -x "$dest/usr/sbin/pdata_tools" ]; then
  echo "get-oracles: thin-provisioning-tools 1.x already at $dest/usr/sbin/pdata_tools"
elif [ ! -d "$shared" ]; then
  echo "get-oracles: $shared not found; skipping thin-provisioning-tools 1.x (1.x oracle tests will skip)"
elif [ ! -x "$getter" ] && [ ! -f "$getter" ]; then
  echo "get-oracles: $getter not found; skipping thin-provisioning-tools 1.x"
else
  mkdir -p "$dest"
  # The shared script calls apt-get (download only, private lists), which needs root.
  as_root=()
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then as_root=(sudo); fi
  if out=$("${as_root[@]}" bash "$getter" "$dest" 2>&1); then
    echo "get-oracles: thin-provisioning-tools 1.x at $(printf '%s\n' "$out" | tail -n 1)"
  else
    echo "get-oracles: fetching thin-provisioning-tools 1.x failed (1.x oracle tests will skip):"
    printf '%s\n' "$out" | sed 's/^/  /'
  fi
fi

if [ -x /usr/sbin/thin_check ]; then
  echo "get-oracles: thin-provisioning-tools $(/usr/sbin/thin_check -V 2>&1 | head -n 1) at /usr/sbin"
else
  echo "get-oracles: /usr/sbin/thin_check not found; install the distribution's thin-provisioning-tools (0.9.0 oracle tests will skip)"
fi
exit 0
