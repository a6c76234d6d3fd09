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

echo "== go test -race"
$GO test -race -count=1 -timeout 12m ./...

# Each fuzz target runs briefly on top of its seed corpus; long runs are for
# developers (go test -fuzz=Name -fuzztime=10m ./pkg).
FUZZTIME=${FUZZTIME:-5s}
echo "== fuzz (each target ${FUZZTIME})"
for pkg in $($GO list ./...); do
  dir=$($GO list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $pkg $target"
    $GO test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg"
  done
done
