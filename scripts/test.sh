#!/usr/bin/env bash
# The project's test command (make test, and so .ci/run): formatting, vet, the
# race-enabled unit and integration tests, and a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "not gofmt-formatted:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
$GO vet ./...

# --- mininet (bmv2-tests/mininet) -----------------------------------------
# The Figure 2 scenario on mininet runs in the Go tests below when this
# machine can run it: as root, with network namespaces, and Debian's mininet
# importable by /usr/bin/python3. Install mininet (and ethtool) when it is
# missing; a failed install is reported and the Go test then skips with its
# reason. --no-install-recommends keeps Open vSwitch out; should a dpkg
# step still fail (a service that cannot start in a container), the import
# decides.
if [ "$(id -u)" = 0 ] && unshare --net true 2>/dev/null &&
   ! /usr/bin/python3 -c 'import mininet.net' 2>/dev/null; then
  echo "== installing mininet for bmv2-tests/mininet"
  mn_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mininet ethtool; }
  mn_install >/tmp/dmsc-mininet-apt.log 2>&1 ||
    { apt-get update >>/tmp/dmsc-mininet-apt.log 2>&1 && mn_install >>/tmp/dmsc-mininet-apt.log 2>&1; } || true
  if /usr/bin/python3 -c 'import mininet.net' 2>/dev/null; then
    echo "mininet installed"
  else
    echo "mininet could not be installed (the mininet scenario will skip); the end of /tmp/dmsc-mininet-apt.log:"
    tail -n 5 /tmp/dmsc-mininet-apt.log || true
  fi
fi
# --- end mininet -------------------------------------------------------------

echo "== go test -race"
$GO test -race -count=1 -timeout 12m ./...

# The demo and the QoS test make timing claims (a link cut survived, a QoS
# event rerouted within a bound) that the race detector's slowdown would make
# meaningless; they skip under -race and run here as users run them.
echo "== timing tests, without the race detector"
$GO test -count=1 -timeout 5m -run '^(TestDemo|TestQoSRerouteBySCSC|TestOneCycle)$' ./demo ./e2e ./bench/qos

# Each fuzz target runs briefly on top of its seed corpus; long runs are for
# developers (go test -fuzz=Name -fuzztime=10m ./pkg).
FUZZTIME=${FUZZTIME:-5s}
# The Go fuzzer sometimes ends a time-limited run with a bare "context
# deadline exceeded" failure when the time runs out mid-batch; that is the
# harness, not a finding (a finding writes "Failing input written to"). Such a
# run is tried once more; a real finding fails at once.
fuzz_once() {
  local out
  for attempt in 1 2; do
    if out=$($GO test -run='^$' -fuzz="^${2}\$" -fuzztime="$FUZZTIME" "$1" 2>&1); then
      echo "$out" | tail -n 2
      return 0
    fi
    echo "$out"
    if echo "$out" | grep -q 'Failing input written to' || ! echo "$out" | grep -q 'context deadline exceeded'; then
      return 1
    fi
    echo "(the fuzzer's time limit tripped its own harness; trying $2 once more)"
  done
  return 1
}

echo "== fuzz (each target ${FUZZTIME})"
for pkg in $($GO list ./...); do
  dir=$($GO list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $pkg $target"
    fuzz_once "$pkg" "$target"
  done
done
