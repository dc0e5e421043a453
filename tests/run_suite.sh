#!/usr/bin/env bash
# Every test, in two lanes beside each other, against the broker the caller started
# (KAFKA_TEST_BROKER; `make test` starts it and calls this):
#   * background: the lab's service tests (root, network namespaces, real packets through tc),
#     then the unit tests and doctests; its report is printed once the foreground is done;
#   * foreground: the other service tests.
# The lanes share only the broker (every test has its own topics and groups) and the machine.
# Most of the suite waits (on brokers, timeouts, paced traffic, windows closing): one after the
# other the service tests took 18 minutes on two cores while using under one.
# Any failure fails the run, and so does a lane that ran no test (pytest's exit code 5).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .cache
log=.cache/lab-and-unit-tests.log
(
  "$PY" -m pytest -p no:cacheprovider -m integration --durations=10 tests/integration/test_lab_*.py
  lab=$?
  "$PY" -m pytest -p no:cacheprovider -m "not integration" --doctest-modules --durations=5 \
    streams detectors lab tests
  unit=$?
  echo "== exit codes: lab tests $lab, unit tests and doctests $unit"
  [ "$lab" -eq 0 ] && [ "$unit" -eq 0 ]
) > "$log" 2>&1 &
background=$!
"$PY" -m pytest -m integration --durations=15 --ignore-glob='*/integration/test_lab_*' tests
rc=$?
wait "$background"
brc=$?
echo "== the lab's tests, then the unit tests and doctests (run beside the above) =="
cat "$log"
echo "== exit codes: other service tests $rc, lab and unit lane $brc"
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
exit "$brc"
