#!/usr/bin/env bash
# Runs every test of the project: installs what the tests need
# (scripts/setup.sh, idempotent), checks formatting and lints, then runs the
# whole workspace's tests. Suites that need a service start it through the
# project's own scripts (scripts/start-*.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  scripts/setup.sh
else
  echo "test.sh: not root, so scripts/setup.sh was not run; cross targets may be missing" >&2
fi
# rustup's cargo first: Debian's rustc-web is only a build toolchain for targets.
export PATH="$HOME/.cargo/bin:$PATH"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
