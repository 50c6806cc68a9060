"""`watchgate-desktop`: the Qt desktop app's entry point.

The app itself (sign-in, resources, requests, query tab, replay) is not built yet; until it is,
this entry point says so plainly instead of opening an empty window.
"""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "watchgate-desktop: the desktop app is not part of this release yet; "
        "use the `watchgate` CLI (watchgate login, watchgate resources)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
