#!/usr/bin/env bash
# Fetch the oracle tools the test suite compares against. Usage: scripts/get-oracles.sh [DEST]
#
# - thin-provisioning-tools 1.x (Rust): Debian trixie's package, unpacked into DEST
#   (default <repo>/.tools/tpt), giving DEST/usr/sbin/pdata_tools, which test/helpers/oracle.ts
#   looks for. How: apt-get reads a throwaway sources list (trixie, main) with private
#   package lists, downloads the .deb into a temporary directory, and dpkg-deb unpacks it
#   into DEST. Nothing is installed, and the system's own apt lists stay as they were.
#   The archive is the Debian mirror this machine's apt already uses (the first configured
#   URI ending in /debian), or THINSIM_DEBIAN_MIRROR; packages are verified with the
#   Debian archive keyring (package debian-archive-keyring).
# - thin-provisioning-tools 0.9.0 (C++): from the distribution (/usr/sbin/thin_*); .ci/run
#   installs it with apt-get; this script only reports whether it is present.
#
# Idempotent: a DEST whose pdata_tools runs is left alone. Needs apt-get and dpkg-deb
# (Debian or Ubuntu) and the network; any of them missing, or a failed download, is
# reported and is not an error: the oracle tests then skip visibly (test/helpers/oracle.ts
# gives the reason). Always exits 0.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${1:-"$repo/.tools/tpt"}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

say() { echo "get-oracles: $*"; }

# The version line of DEST's pdata_tools, or nothing (status 1) when it does not run.
tpt_version() { "$dest/usr/sbin/pdata_tools" thin_check -V 2>/dev/null | head -n 1; }

# The Debian mirror URI from this machine's apt sources (deb822 .sources and one-line
# .list files), e.g. http://mirror.example/debian. Empty when none is configured.
debian_mirror() {
  if [ -n "${THINSIM_DEBIAN_MIRROR:-}" ]; then echo "$THINSIM_DEBIAN_MIRROR"; return; fi
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk '
    /^[[:space:]]*#/ { next }
    /^URIs:/ { for (i = 2; i <= NF; i++) print $i; next }
    /^deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }
  ' "${files[@]}" | grep -E '/debian/?$' | head -n 1 | sed 's:/*$::'
}

# Download and unpack trixie's thin-provisioning-tools into DEST; say why not on failure.
fetch_tpt() {
  local tool
  for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || { say "$tool not found (not a Debian-like system)"; return 1; }
  done
  [ -r "$keyring" ] || { say "$keyring not found; apt-get install debian-archive-keyring"; return 1; }
  local mirror
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || { say "no Debian mirror in this machine's apt sources; set THINSIM_DEBIAN_MIRROR=<uri of a Debian archive>"; return 1; }

  local work
  work=$(mktemp -d) || return 1
  # shellcheck disable=SC2064  # expand $work now: it is local to this function
  trap "rm -rf '$work'; trap - RETURN" RETURN
  mkdir -p "$work/lists/partial" "$work/sources" "$work/deb"
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$mirror" "$keyring" \
    >"$work/sources/trixie.sources"
  # Only the sources and the lists are private; the rest of apt's configuration (proxies,
  # architecture) is the machine's. No sandbox user: the private directories belong to us.
  local apt=(apt-get -q -o APT::Sandbox::User="$(id -un)"
    -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$work/sources"
    -o Dir::State::Lists="$work/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
  local log="$work/apt.log"
  # apt-get update exits 0 on some fetch failures: a Packages list must be there too.
  if ! "${apt[@]}" update >"$log" 2>&1 || ! compgen -G "$work/lists/*_Packages*" >/dev/null; then
    say "apt-get update of trixie from $mirror failed:"; sed 's/^/  /' "$log" | tail -n 5; return 1
  fi
  # /trixie: never the version installed here (which apt would also know of).
  if ! (cd "$work/deb" && "${apt[@]}" download thin-provisioning-tools/trixie) >"$log" 2>&1; then
    say "apt-get download thin-provisioning-tools failed:"; sed 's/^/  /' "$log" | tail -n 5; return 1
  fi
  local deb
  deb=$(ls "$work"/deb/thin-provisioning-tools_*.deb 2>/dev/null | head -n 1)
  [ -n "$deb" ] || { say "apt-get download left no .deb"; return 1; }
  mkdir -p "$dest" && dpkg-deb -x "$deb" "$dest" || { say "dpkg-deb -x $deb into $dest failed"; return 1; }
  say "unpacked $(basename "$deb") into $dest"
}

if v=$(tpt_version) && [ -n "$v" ]; then
  say "thin-provisioning-tools $v already at $dest/usr/sbin/pdata_tools"
elif fetch_tpt && v=$(tpt_version) && [ -n "$v" ]; then
  case "$v" in
    1.*) say "thin-provisioning-tools $v at $dest/usr/sbin/pdata_tools" ;;
    *) say "note: trixie's thin-provisioning-tools is now $v (tests expect 1.x) at $dest/usr/sbin/pdata_tools" ;;
  esac
else
  [ -e "$dest/usr/sbin/pdata_tools" ] && say "$dest/usr/sbin/pdata_tools is there but does not run"
  say "no thin-provisioning-tools 1.x (1.x oracle tests will skip)"
fi

if [ -x /usr/sbin/thin_check ]; then
  say "thin-provisioning-tools $(/usr/sbin/thin_check -V 2>&1 | head -n 1) at /usr/sbin"
else
  say "/usr/sbin/thin_check not found; install the distribution's thin-provisioning-tools (0.9.0 oracle tests will skip)"
fi
exit 0
