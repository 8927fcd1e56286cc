"""The ledger's SQLite folder: a home's own var/ is made on first use, any other is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def sovereign(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    return subprocess.run(
        [sys.executable, "-m", "sovereign", *args],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_fresh_home_gets_its_ledger_in_var(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "default.arb").write_text("// the studio's policy\n")
    result = sovereign("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ledger = tmp_path / "var" / "sovereign.db"
    assert ledger.exists()
    assert f"the ledger at {ledger} from empty to revision" in result.stdout


def test_a_home_without_a_policy_does_not_get_a_ledger_made_up(tmp_path: Path) -> None:
    result = sovereign("spend", cwd=Path("/"), SOVEREIGN_HOME=str(tmp_path))
    assert result.returncode == 1
    assert (result.stdout + result.stderr).strip().splitlines() == [
        f"error: the folder {tmp_path / 'var'} of the SQLite ledger does not exist; create it, "
        "or fix SOVEREIGN_DATABASE_URL (a relative path is taken from SOVEREIGN_HOME)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_home_that_does_not_exist_is_one_sentence(tmp_path: Path) -> None:
    result = sovereign("spend", cwd=tmp_path, SOVEREIGN_HOME=str(tmp_path / "studio"))
    assert result.returncode == 1
    assert (result.stdout + result.stderr).strip().splitlines() == [
        f"error: invalid settings: SOVEREIGN_HOME: {tmp_path / 'studio'} is not a folder; "
        "point it at the deployment's folder, the one holding rules/ and var/"
    ]
