#!/usr/bin/env bash
# The whole test suite: installs what is needed, builds, checks formatting, and runs every test
# (unit and integration) twice: a normal build, then under AddressSanitizer + UBSan. Ends on
# ctest's summary of the sanitizer run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
jobs=$(nproc)

echo "== clang-format"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find connector media include tests examples -name '*.[ch]')
clang-format --dry-run --Werror $files

echo "== build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTL_TESTS=ON -DTL_SANITIZE=OFF >/dev/null
cmake --build build -j"$jobs"
echo "== test (RelWithDebInfo)"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== build (ASan+UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTL_TESTS=ON -DTL_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== test (ASan+UBSan)"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd build-asan && ctest --output-on-failure -j"$jobs"
