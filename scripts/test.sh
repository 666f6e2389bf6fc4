#!/usr/bin/env bash
# The whole test suite: installs what is needed, builds, checks formatting, and runs every test
# (unit and integration) three times: a normal build, under AddressSanitizer + UBSan, and under
# ThreadSanitizer; the normal build also runs the agent-heavy integration tests with the agent
# loops on threads of their own (the default puts them on the media workers). Ends on ctest's summary of the ThreadSanitizer run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
jobs=$(nproc)
# ctest runs two tests per core: the integration tests mostly wait (calls held for seconds, SIP
# timers, pacing), so the cores stay far from busy; those that measure latency or pacing run
# alone (RUN_SERIAL in tests/CMakeLists.txt), and harness.py keeps the tests' ports apart. Three
# per core cut the sanitizer passes by another 15% but broke audio under TSan (agent_tls echoed
# 16 of 50 tone frames, scaleout's sipp got a 200 retransmitted in its pause).
test_jobs=$((jobs * 2))

echo "== clang-format"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find connector media include tests examples -name '*.[ch]')
clang-format --dry-run --Werror $files

echo "== size check"
python3 scripts/check-size.py

echo "== build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTL_TESTS=ON -DTL_SANITIZE=OFF >/dev/null
cmake --build build -j"$jobs"
echo "== test (RelWithDebInfo)"
(cd build && ctest --output-on-failure -j"$test_jobs")
echo "== test (RelWithDebInfo, agent loops on threads of their own: agent.on_media_workers false)"
(cd build && TL_IT_AGENT_LOOPS=threads ctest --output-on-failure -j"$test_jobs" \
	-R 'integration[.]test_(audio|agent_hostile|fallback|transfer|bridge|wideband|drain)([.]serial)?$')

echo "== build (ASan+UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTL_TESTS=ON -DTL_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== test (ASan+UBSan)"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd build-asan && ctest --output-on-failure -j"$test_jobs")
unset ASAN_OPTIONS UBSAN_OPTIONS

echo "== build (ThreadSanitizer)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DTL_TESTS=ON -DTL_SANITIZE=OFF -DTL_TSAN=ON \
	>/dev/null
cmake --build build-tsan -j"$jobs"
echo "== test (ThreadSanitizer)"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp"
# ThreadSanitizer slows trunkline most (5-15x): one test per core, so audio still flows beside
# another test (at two per core test_agent_tls once got 1 of its 100 tone frames back).
cd build-tsan && ctest --output-on-failure -j"$jobs"
