#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for FUZZTIME each (default
# 30s), one after the other with 2 workers. Targets are discovered per
# package with `go test -list`, so new FuzzXxx functions are picked up
# without editing this file. Usage: scripts/fuzz.sh [FUZZTIME]
set -euo pipefail
GO=${GO:-go}
fuzztime=${1:-30s}
cd "$(dirname "$0")/.."
pkgs=$(grep -rlE --include='*_test.go' '^func Fuzz[A-Z0-9_]' . | xargs -r -n1 dirname | sort -u)
failed=()
count=0
start=$SECONDS
[ -n "$pkgs" ] || { echo "no fuzz targets"; exit 0; }
# One `go test -list` for every package: it prints each package's matching
# names, then "ok  <import path>".
targets=()
names=()
while read -r first second _; do
	case $first in
	Fuzz*) names+=("$first") ;;
	ok)
		for n in "${names[@]}"; do targets+=("$second $n"); done
		names=()
		;;
	esac
done < <($GO test -list '^Fuzz' $pkgs)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	count=$((count + 1))
	echo "== $pkg $name ($fuzztime)"
	if ! $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel 2 "$pkg"; then
		failed+=("$t")
	fi
done
echo "== $count fuzz targets in $((SECONDS - start)) s"
if ((${#failed[@]})); then
	printf 'FAILED: %s\n' "${failed[@]}"
	echo "a failing input is saved under the package's testdata/fuzz/; commit it with the fix"
	exit 1
fi
