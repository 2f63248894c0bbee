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


def test_prologue_replaces_marker_lines_and_pins_the_version(tmp_path):
    part = tmp_path / "f.sql"
    part.write_text("CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS $p$\n#PROLOGUE#\nreturn 1\n$p$;\n")
    script = build_sql.build("9.9.9", "/opt/pgmq/9.9.9", [str(part)])
    assert "#PROLOGUE#" not in script
    assert 'GD["pg_message_queue 9.9.9"]' in script
    assert "sys.path.insert(0, '/opt/pgmq/9.9.9')" in script
    assert 'if pgmq.__version__ != "9.9.9"' in script
    compiled = script.split("$p$\n")[1].split("$p$")[0]
    compile(compiled.replace("return 1", "x = 1"), "<body>", "exec")


def test_marker_must_be_a_line_of_its_own(tmp_path):
    part = tmp_path / "f.sql"
    part.write_text("x #PROLOGUE#\n")
    try:
        build_sql.build("1", "/x", [str(part)])
    except SystemExit as exc:
        assert "#PROLOGUE#" in str(exc)
    else:
        raise AssertionError("a misplaced marker must fail the build")
