"""Print one line per earlier release in sql/releases.json: VERSION COMMIT FIXTURE
(``-`` where a release has none), for ``make install-prior``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(extension: str) -> None:
    releases = json.loads((ROOT / "sql/releases.json").read_text())[extension]
    for version, info in releases.items():
        print(version, info.get("commit", "-"), info.get("fixture", "-"))


if __name__ == "__main__":
    main(sys.argv[1])
