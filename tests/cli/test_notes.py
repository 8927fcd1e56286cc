"""`sovereign notes sync` and `sovereign notes search`, as a person runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def sovereign(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    return subprocess.run(
        [sys.executable, "-m", "sovereign", *args],
        env={**clean, "PYTHONPATH": str(ROOT), "SOVEREIGN_HOME": str(home), **env},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_home(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "default.arb").write_text("// the studio's policy\n")
    (tmp_path / "var").mkdir()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "fonts.md").write_text(
        "# Signage\n\nOpen-source typefaces for the museum's signs: Atkinson Hyperlegible.\n"
    )
    (notes / "rates.txt").write_text("Our day rate is 600 EUR.\n")
    return tmp_path


def test_sync_then_search(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    synced = sovereign("notes", "sync", "--json", home=home, SOVEREIGN_NOTES_DIR="notes")
    assert synced.returncode == 0, synced.stderr
    stats = json.loads(synced.stdout)
    assert (stats["added"], stats["removed"], stats["folder"]) == (2, 0, str(home / "notes"))

    found = sovereign(
        "notes", "search", 'museum "signs* -NEAR', "--json", home=home, SOVEREIGN_NOTES_DIR="notes"
    )
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert [h["path"] for h in hits] == ["fonts.md"]
    assert "Atkinson" in hits[0]["text"] and hits[0]["score"] > 0

    plain = sovereign("notes", "search", "day rate", home=home, SOVEREIGN_NOTES_DIR="notes")
    assert plain.returncode == 0, plain.stderr
    assert "rates.txt" in plain.stdout and "600 EUR" in plain.stdout

    again = sovereign("notes", "sync", home=home, SOVEREIGN_NOTES_DIR="notes")
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout

    nothing = sovereign("notes", "search", "🎨", home=home, SOVEREIGN_NOTES_DIR="notes")
    assert nothing.returncode == 0 and "no passage matches" in nothing.stdout


def test_no_folder_configured_is_one_sentence(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    result = sovereign("notes", "search", "fonts", home=home)
    assert result.returncode == 1
    assert (result.stdout + result.stderr).strip().splitlines() == [
        "error: no notes folder is configured; set SOVEREIGN_NOTES_DIR to the folder of the "
        "studio's Markdown and text documents"
    ]


def test_a_missing_folder_is_one_sentence(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    result = sovereign("notes", "sync", home=home, SOVEREIGN_NOTES_DIR="gone")
    assert result.returncode == 1
    assert (result.stdout + result.stderr).strip().splitlines() == [
        f"error: the notes folder {home / 'gone'} does not exist; create it or fix "
        "SOVEREIGN_NOTES_DIR"
    ]
