#!/usr/bin/env bash
# Runs the project's benchmarks and prints a report to paste into
# docs/benchmarks.md: the machine, the command, and each figure beside the peer
# measured in the same run. Usage: bench/run.sh [package-pattern ...]
# BENCHTIME (default 2s) and COUNT (default 1) tune go test -bench.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BENCHTIME=${BENCHTIME:-2s}
COUNT=${COUNT:-1}

pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  # Every package under bench/, plus the in-package benchmarks the docs cite.
  mapfile -t pkgs < <($GO list ./bench/... ./softswitch/... ./p4rt/... ./spf/... ./spa/... 2>/dev/null)
fi

echo "# DMSC benchmarks, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "go: $($GO version | cut -d' ' -f3-)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
echo "command: bench/run.sh ${*:-} (BENCHTIME=$BENCHTIME COUNT=$COUNT)"
echo
$GO test -run '^$' -bench . -benchmem -benchtime "$BENCHTIME" -count "$COUNT" -timeout 30m "${pkgs[@]}" 2>&1 | grep -vE '^(PASS|ok |\?)' 
