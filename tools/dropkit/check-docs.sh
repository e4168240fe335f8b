#!/bin/sh
# The ctest test `docs`: the documentation says what the code does.
#   sh tools/dropkit/check-docs.sh build/dropkit .
# 1. docs/cli.md is what `dropkit help-markdown` prints (the CLI's own flag definitions).
# 2. README.md's Python quick start is examples/python/quickstart.py, which the tests run.
# 3. Every "spec.md section N" cited in the sources and documents is a section of docs/spec.md.
set -u
cli=$1
root=$2
status=0

if ! "$cli" help-markdown | diff -u "$root/docs/cli.md" -; then
  echo "docs/cli.md is out of date: regenerate it with 'build/dropkit help-markdown > docs/cli.md'" >&2
  status=1
fi

if ! awk '/^```python$/ { f = 1; next } /^```$/ { if (f) exit } f' "$root/README.md" |
  diff -u "$root/examples/python/quickstart.py" -; then
  echo "README.md's Python quick start differs from examples/python/quickstart.py:" \
    "make them the same" >&2
  status=1
fi

cited=$(grep -rhoE "spec\.md section [0-9]+" "$root/README.md" "$root/docs" "$root/src" \
  "$root/tools" "$root/tests" "$root/python" "$root/examples" | grep -oE "[0-9]+$" | sort -u)
for n in $cited; do
  if ! grep -q "^## $n\. " "$root/docs/spec.md"; then
    echo "spec.md section $n is cited, but docs/spec.md has no section $n" >&2
    status=1
  fi
done

exit $status
