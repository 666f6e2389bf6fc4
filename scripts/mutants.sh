#!/bin/sh
# Mutation check of the test suite: applies each known-bad patch of tests/mutants/*.mutant to a
# scratch copy of this tree (never the tree itself), builds what its tests need, runs them, and
# reports each mutant killed or survived, and the score. Takes long (not part of scripts/test.sh).
#   scripts/mutants.sh                 all mutants
#   scripts/mutants.sh reorder rtcp    those whose file name contains "reorder" or "rtcp"
#   scripts/mutants.sh --check         only check that every mutant still applies
#   scripts/mutants.sh --list | --keep | -j N
# Exit status 0 only when every mutant applied, built and was killed. See tests/README.md.
set -e
cd "$(dirname "$0")/.."
exec python3 tests/mutants/mutants.py "$@"
