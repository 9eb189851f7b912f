#!/usr/bin/env bash
# The founding case, end to end on one machine: build the lab, run the 54
# directed pairs, print the matrix and verdict, write the reports (HTML, JSON,
# text, CSV, DOT, nmap XML) and the verified evidence bundle, tear down.
# Exits with the run's verdict code (0 pass, 1 violation, 2 usage, 3 inconclusive).
set -uo pipefail
out=${1:-out/demo}
here=$(cd "$(dirname "$0")" && pwd)
# The repository's own virtualenv, when `make setup` has made it.
venv=$(cd "$here/../.." && pwd)/.venv/bin
if [ -x "$venv/segscan-lab" ]; then
  PATH="$venv:$PATH"
fi
mkdir -p "$out"

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: the lab needs root (network namespaces, nftables)" >&2
  exit 2
fi
if segscan-lab status >/dev/null 2>&1; then
  echo "demo: a lab is already up; take it down first with: segscan-lab down" >&2
  exit 2
fi

trap 'segscan-lab down >/dev/null 2>&1' EXIT
segscan-lab up "$here/founding/lab.yaml" || exit 2

coordinator run --policy "$here/founding/policy.yaml" --wait
code=$?
rm -rf "$out/nmap" "$out/evidence"
coordinator report latest --format json -o "$out/report.json" >/dev/null
coordinator report latest --format text -o "$out/report.txt" >/dev/null
coordinator report latest --format html -o "$out/report.html" >/dev/null
coordinator report latest --format csv -o "$out/findings.csv" >/dev/null
coordinator report latest --format dot -o "$out/graph.dot" >/dev/null
coordinator report latest --format xml -o "$out/nmap" >/dev/null
# The bundle the coordinator sealed when the run settled, checked on arrival.
coordinator evidence fetch latest -o "$out/evidence" >/dev/null || code=3
coordinator evidence verify "$out/evidence" || code=3
echo "demo: report.html, findings.csv, graph.dot, nmap/*.xml and evidence/ in $out/"
case "$code" in
  0) meaning="every pair passes" ;;
  1) meaning="a violation" ;;
  2) meaning="usage or configuration error" ;;
  3) meaning="inconclusive" ;;
  *) meaning="not a verdict: see the messages above" ;;
esac
echo "demo: exit code $code ($meaning)"
exit "$code"
