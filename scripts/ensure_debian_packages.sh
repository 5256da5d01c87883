#!/usr/bin/env sh
# Installs the Debian packages named as arguments when any is missing (as root, through apt-get), or stops in one
# line that says what to install. The reproductions call it for the real data that Debian ships; the test suite
# never needs it (it reads the committed subsets in tests/fixtures).
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's$missing (real data for the reproduction)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null && exit 0
  echo "error: apt-get could not install$missing; install them by hand: apt-get install$missing" >&2
  exit 1
fi
echo "error: this reproduction needs Debian's$missing: run 'sudo apt-get install$missing', then rerun" >&2
exit 1
