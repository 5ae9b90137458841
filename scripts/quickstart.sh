#!/usr/bin/env bash
# The main job: set the machine up, then cross-compile the bundled example
# template for every target this machine can build into ./out, run each
# binary that can run here, and print the summary table.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  scripts/setup.sh
else
  echo "quickstart.sh: not root, so scripts/setup.sh was not run" >&2
fi
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release --locked -p rustle-cross
exec target/release/rustle-cross build examples/hello-template --all-available --out out --smoke-test "$@"
