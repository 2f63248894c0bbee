"""The original pg_message_queue's own test script, run verbatim against this extension.

``tests/fixtures/original/basic.sql`` is ``tests/basic.sql`` of the original
(github.com/Jacob-Kroeze/pg-message-queue at ead69dd, Chris Travers' PostgreSQL-style
licence in ``tests/fixtures/original/LICENSE``), unchanged. It creates text, bytea, xml,
inet and date queues, sends, reads first-in-first-out and by id as text and as bytea,
and checks that nothing is handed out twice; every check is a row of ``test_result``,
and the script ends with ``N tests passed and M failed``. Its checks for 0.2 features
run because our ``extversion`` continues the original's numbering.
"""

import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parent / "fixtures" / "original" / "basic.sql"


def _run(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-A", "-F", "|", "-d", dsn, "-f", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_original_test_script_passes_every_check(dsn: str) -> None:
    run = _run(dsn)
    assert run.returncode == 0, f"the original's tests/basic.sql fails in psql:\n{run.stderr}"
    results = re.findall(r"^(.+)\|([tf]?)$", run.stdout, re.MULTILINE)
    checks = {name: ok for name, ok in results if name != "test_name"}
    failed = sorted(name for name, ok in checks.items() if ok != "t")
    assert not failed, f"checks of the original's test script that fail here: {failed}\n{run.stdout}"
    # Every check the script has, including its 0.2 ones (queues of inet and date).
    assert len(checks) == 27, run.stdout
    assert "27 tests passed and 0 failed" in run.stdout


def test_the_original_test_script_leaves_nothing_behind(dsn: str, db) -> None:
    """The script ends in ROLLBACK: no queue and no table survive it."""
    assert _run(dsn).returncode == 0
    assert db.execute("SELECT count(*) FROM pg_mq_config_catalog").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pg_mq_queue_test_queue%'").fetchone()[0] == 0
