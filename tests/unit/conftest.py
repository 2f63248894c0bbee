"""Unit tests of pure logic: no server, a fake ``plpy`` where one is imported."""

import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plpython"))


class _FakeError(Exception):
    pass


fake = types.ModuleType("plpy")
fake.Error = _FakeError
fake.SPIError = _FakeError
sys.modules.setdefault("plpy", fake)
