#!/usr/bin/env bash
# Install the carried wheels (.whl/) into /tmp/site, once per machine and wheel set: every device script calls
# this instead of its own pip line. It reinstalls only when .whl holds a wheel not installed yet (a later call
# may carry pillow where the first carried .whlt without it), and a lock keeps two scripts started side by side
# from installing under each other. Callers then `export PYTHONPATH=/tmp/site:$PWD`.
set -eu
SITE=${SITE:-/tmp/site}
mkdir -p "$SITE"
exec 9>"$SITE.lock"
flock 9
want=$(cd .whl && ls -- *.whl | sort)
have=$(sort "$SITE/.wheels" 2>/dev/null || true)
if [ -n "$(comm -13 <(echo "$have") <(echo "$want"))" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
  printf '%s\n%s\n' "$have" "$want" | sed '/^$/d' | sort -u >"$SITE/.wheels"
fi
