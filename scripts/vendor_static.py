#!/usr/bin/env python3
"""Copy the terminal's front-end files from node_modules/ (installed by `npm ci`) into
static/vendor/, where Django serves them: the site never loads anything from a CDN."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = {
    "@xterm/xterm/lib/xterm.js": "xterm/xterm.js",
    "@xterm/xterm/css/xterm.css": "xterm/xterm.css",
    "@xterm/xterm/LICENSE": "xterm/LICENSE",
    "@xterm/addon-fit/lib/addon-fit.js": "xterm/addon-fit.js",
    "@xterm/addon-web-links/lib/addon-web-links.js": "xterm/addon-web-links.js",
    "@xterm/addon-search/lib/addon-search.js": "xterm/addon-search.js",
}


def main() -> int:
    source_root = ROOT / "node_modules"
    dest_root = ROOT / "static" / "vendor"
    missing = [s for s in FILES if not (source_root / s).is_file()]
    if missing:
        print(f"missing in node_modules/ (run `npm ci`): {', '.join(missing)}", file=sys.stderr)
        return 1
    for source, dest in FILES.items():
        target = dest_root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_root / source, target)
    print(f"copied {len(FILES)} files into {dest_root.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
