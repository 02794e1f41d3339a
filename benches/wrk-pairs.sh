#!/usr/bin/env bash
# Loopback load as issue 15 measured it: the `load` bench's servers on core 0 (`LOAD_SERVE=1`,
# one worker thread), wrk on core 1, 64 connections, `POST /hello`. Every server runs right
# after a run of the bare one, and its ratio to bare is the median of those pairs' ratios:
# on a shared VM the rate of one server moves by 10-30 % within a minute.
#
#   bash benches/wrk-pairs.sh [ROUNDS (20)] [SECONDS per run (1)] [server name regex (.)]
#
# Needs wrk and taskset (Debian: wrk, util-linux) and two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
seconds=${2:-1}
pick=${3:-.}

build=$(cargo bench -p tower-serverless-benches --bench load --no-run 2>&1) || { printf '%s\n' "$build" >&2; exit 1; }
bin=$(sed -n 's/.*Executable .*(\(.*\))$/\1/p' <<<"$build")
server=
work=$(mktemp -d)
trap '[ -z "$server" ] || kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
printf 'wrk.method = "POST"\n' >"$work/post.lua"

# The servers print an address and a name a line each, then `# serving until killed`.
LOAD_SERVE=1 taskset -c 0 "$bin" >"$work/list" &
server=$!
until grep -qs '^# serving' "$work/list"; do
  kill -0 "$server" # stops here if the servers died
  sleep 0.1
done
grep -v '^#' "$work/list" >"$work/servers"

rate() {
  taskset -c 1 wrk -t1 -c64 -d"${seconds}s" -s "$work/post.lua" "http://$1/hello" |
    awk '/Requests\/sec/ { print $2 }'
}

bare=$(awk -F'\t' '$2 == "axum, bare" { print $1 }' "$work/servers")
for _ in $(seq "$rounds"); do
  while IFS=$'\t' read -r addr name; do
    [ "$addr" = "$bare" ] && continue
    grep -qE -- "$pick" <<<"$name" || continue
    base=$(rate "$bare")
    this=$(rate "$addr")
    awk -v n="$name" -v b="$base" -v r="$this" 'BEGIN { printf "%s\t%.4f\n", n, r / b }'
  done <"$work/servers"
done >"$work/ratios"

echo "| server | ratio to bare, median of $rounds pairs of ${seconds} s | quartiles |"
echo "|---|---|---|"
cut -f1 "$work/ratios" | awk '!seen[$0]++' | while IFS= read -r name; do
  awk -F'\t' -v n="$name" '$1 == n { print $2 }' "$work/ratios" | sort -g |
    awk -v n="$name" '{ v[NR] = $1 }
      END { printf "| %s | %.3f | %.3f-%.3f |\n", n, v[int((NR + 1) / 2)], v[int(NR / 4) + 1], v[int(3 * NR / 4) + 1] }'
done
