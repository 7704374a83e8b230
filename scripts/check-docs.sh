#!/usr/bin/env bash
# The documentation check (`make docs-check`, and part of `make test`):
#   1. every relative link in every Markdown file of the repository points to a file or
#      folder that exists, and every #anchor to a heading that exists (in the same file or
#      the one linked); http(s) links are not checked and nothing is fetched;
#   2. README.md is at most README_MAX_LINES lines (default 350): it is the front door, the
#      depth lives in docs/.
# The link check is remark-cli with remark-validate-links, pinned in
# scripts/docs-check/package-lock.json and installed there by scripts/test-setup.sh
# (`bash scripts/test-setup.sh docs-check` installs only that).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

README_MAX_LINES=${README_MAX_LINES:-350}
DIR=scripts/docs-check

say() { printf 'docs-check: %s\n' "$*"; }
die() { printf 'docs-check: ERROR: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node missing: run \`make test-setup\`"
want=$(sha256sum "$DIR/package-lock.json" | cut -d' ' -f1)
[ "$(cat "$DIR/node_modules/.lock.sha256" 2>/dev/null || true)" = "$want" ] \
    || die "remark is missing or older than $DIR/package-lock.json: run \`bash scripts/test-setup.sh docs-check\`"

# The Markdown files: tracked and untracked but not ignored (so target/, .venv*/,
# node_modules/ and the fuzz corpora stay out); without git, the same by name.
files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    while IFS= read -r -d '' f; do [ -e "$f" ] && files+=("$f"); done \
        < <(git ls-files -z --cached --others --exclude-standard -- '*.md')
else
    while IFS= read -r -d '' f; do files+=("${f#./}"); done < <(find . \
        \( -name node_modules -o -name target -o -name '.venv*' -o -name .git \
           -o -path ./fuzz/corpus -o -path ./fuzz/artifacts \) -prune -o -name '*.md' -print0)
fi
[ "${#files[@]}" -gt 0 ] || die "no Markdown files found"

fail=0
lines=$(wc -l < README.md)
if [ "$lines" -gt "$README_MAX_LINES" ]; then
    say "README.md has $lines lines, more than $README_MAX_LINES: move the depth to docs/"
    fail=1
fi

# --frail: a warning (a broken link) fails the run; --quiet: only files with a problem print.
if ! DOCS_CHECK_ROOT=$PWD "$DIR/node_modules/.bin/remark" --rc-path "$DIR/remarkrc.mjs" \
        --no-config --no-ignore --no-stdout --frail --quiet "${files[@]}"; then
    say "broken relative links above (file:line:column, then what is missing)"
    fail=1
fi

[ "$fail" = 0 ] || exit 1
say "ok: ${#files[@]} Markdown files, every relative link and anchor resolves; README.md $lines lines (at most $README_MAX_LINES)"
