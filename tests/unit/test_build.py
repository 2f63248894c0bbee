import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import build_sql  # noqa: E402


def test_versions_agree_across_control_pyproject_and_package():
    control = (ROOT / "pg_message_queue.control").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    package = (ROOT / "plpython/pg_message_queue/__init__.py").read_text()
    (v_control,) = re.findall(r"default_version = '([^']+)'", control)
    (v_pyproject,) = re.findall(r'^version = "([^"]+)"', pyproject, re.M)
    (v_package,) = re.findall(r'__version__ = "([^"]+)"', package)
    assert v_control == v_pyproject == v_package


def _parts(tmp_path, idempotent: str, incremental: dict[str, str] | None = None, releases: dict | None = None):
    parts = tmp_path / "sql"
    (parts / "incremental").mkdir(parents=True)
    (parts / "idempotent").mkdir()
    (parts / "head.sql").write_text("CREATE TABLE IF NOT EXISTS m (name text PRIMARY KEY);\n")
    (parts / "idempotent" / "010-f.sql").write_text(idempotent)
    for name, text in (incremental or {}).items():
        (parts / "incremental" / f"{name}.sql").write_text(text)
    if releases is not None:
        (parts / "releases.json").write_text(json.dumps({"ext": releases}))
    return parts


def _build(parts, version="9.9.9"):
    return build_sql.Build("ext", version, f"/opt/pgmq/{version}", parts, "pg_message_queue", "m")


def test_prologue_replaces_marker_lines_pins_the_version_and_binds_the_extension(tmp_path):
    body = "CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS $p$\n#PROLOGUE#\nreturn 1\n$p$;\n"
    script = _build(_parts(tmp_path, body)).script()
    assert "#PROLOGUE#" not in script
    assert 'GD.get("pg_message_queue 9.9.9")' in script
    assert "sys.path.insert(0, '/opt/pgmq/9.9.9')" in script
    assert 'if pgmq.__version__ != "9.9.9"' in script
    assert "pgmq._db.bind('ext')" in script
    compiled = script.split("$p$\n")[1].split("$p$")[0]
    compile(compiled.replace("return 1", "x = 1"), "<body>", "exec")


def test_marker_must_be_a_line_of_its_own(tmp_path):
    try:
        _build(_parts(tmp_path, "x #PROLOGUE#\n")).script()
    except SystemExit as exc:
        assert "#PROLOGUE#" in str(exc)
    else:
        raise AssertionError("a misplaced marker must fail the build")


def test_run_once_parts_are_guarded_and_recorded_and_upgrades_premark_what_a_release_had(tmp_path):
    first = "CREATE TABLE t (a int);\n"
    releases = {"0.1.0": {"commit": "x", "migrations": {"001-t": build_sql.digest(first)}}}
    parts = _parts(tmp_path, "SELECT 1;\n", {"001-t": first, "002-u": "ALTER TABLE t ADD b int;\n"}, releases)
    build = _build(parts)
    install = build.script()
    assert "IF NOT EXISTS (SELECT FROM m WHERE name = '001-t')" in install
    assert install.index("001-t") < install.index("002-u") < install.index("SELECT 1;")
    upgrade = build.script("0.1.0")
    assert "VALUES ('001-t', '0.1.0', $body$CREATE TABLE t (a int);\n$body$) ON CONFLICT (name) DO NOTHING" in upgrade
    written = sorted(p.name for p in build.write(tmp_path / "out"))
    assert written == ["ext--0.1.0--9.9.9.sql", "ext--9.9.9.sql"]


def test_a_released_run_once_part_may_not_change(tmp_path):
    releases = {"0.1.0": {"commit": "x", "migrations": {"001-t": build_sql.digest("CREATE TABLE t (a int);\n")}}}
    parts = _parts(tmp_path, "SELECT 1;\n", {"001-t": "CREATE TABLE t (a bigint);\n"}, releases)
    try:
        _build(parts)
    except SystemExit as exc:
        assert "must not change" in str(exc)
    else:
        raise AssertionError("an edited released part must fail the build")


def test_dollar_quoting_never_collides_with_the_body():
    assert build_sql.quoted("a $body$ b") == "$body_$a $body$ b$body_$"


def test_the_real_released_parts_are_unchanged():
    build_sql.Build("pg_message_queue", "0.0.0", "/x", ROOT / "sql", "pg_message_queue", "pg_mq_migration")


def test_a_prelude_runs_the_released_part_itself_not_a_copy(tmp_path):
    first = "CREATE TABLE t (a int);\n"
    releases = {"0.2.1": {"prelude": "prelude/old.sql", "migrations": {"001-t": build_sql.digest(first)}}}
    parts = _parts(tmp_path, "SELECT 1;\n", {"001-t": first}, releases)
    (parts / "prelude").mkdir()
    (parts / "prelude" / "old.sql").write_text("ALTER TABLE t RENAME TO t_old;\n-- #PART incremental/001-t.sql#\n")
    upgrade = _build(parts).script("0.2.1")
    prelude = upgrade[upgrade.index("ALTER TABLE t RENAME") : upgrade.index("run-once parts 0.2.1 already contained")]
    assert "CREATE TABLE t (a int);" in prelude and "#PART" not in prelude


def test_make_install_puts_scripts_only_in_the_extension_directory():
    """PGXS installs $(SCRIPTS) into the server's bin directory: the Makefile must not
    call its list of extension scripts that (it once did, and every .sql landed in bin/)."""
    import shutil
    import subprocess

    if shutil.which("pg_config") is None and not Path("/usr/lib/postgresql/15/bin/pg_config").exists():
        raise AssertionError("pg_config is missing: run `make deps` (make test does)")
    dry = subprocess.run(["make", "-n", "install"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    bindir = subprocess.run(
        [str(Path("/usr/lib/postgresql/15/bin/pg_config")), "--bindir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    installs = [line for line in dry.splitlines() if "install" in line and ".sql" in line]
    assert installs, dry
    assert not [line for line in installs if bindir in line], installs
    assert all("/extension" in line for line in installs), installs
