"""`phasetwin keys` and a signed replay through the CLI: the twin's controller signs, its devices verify."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from phasetwin.cli.main import app

runner = CliRunner()
SHORT = ["--start", "2024-01-15T06:00", "--end", "2024-01-15T07:00", "--psd", "3", "--pess", "2",
         "--controller", "rolling-milp", "--no-baseline"]


def _text(output: str) -> str:
    """The CLI's output with rich's line wrapping undone."""
    return " ".join(output.split())


def test_a_signed_replay_verifies_every_heartbeat_and_command(tmp_path: Path) -> None:
    made = runner.invoke(app, ["keys", "new", "--key-id", "ctl-1", "--out", str(tmp_path / "keys")])
    assert made.exit_code == 0, made.output
    key = tmp_path / "keys" / "ctl-1.key.json"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ring = tmp_path / "keys" / "keyring.json"
    out = tmp_path / "run"
    result = runner.invoke(app, ["replay", "--out", str(out), "--keyring", str(ring), "--signing-key", str(key),
                                 *SHORT])
    assert result.exit_code == 0, result.output
    assert "unsigned mode" not in result.output
    auth = json.loads((out / "summary.json").read_text())["auth"]
    assert auth["signed"] and auth["signing_key"] == "ctl-1"
    assert auth["heartbeats_accepted"] == 3 and auth["heartbeats_refused"] == {} and auth["commands_refused"] == {}
    lines = (out / "audit.jsonl").read_text().splitlines()
    assert len(lines) == auth["audit_records"] > 0
    assert {json.loads(line)["key_id"] for line in lines} == {"ctl-1"}

    revoked = runner.invoke(app, ["keys", "revoke", "--keyring", str(ring), "--key-id", "ctl-1"])
    assert revoked.exit_code == 0, revoked.output
    refused = runner.invoke(app, ["replay", "--out", str(tmp_path / "r2"), "--keyring", str(ring),
                                  "--signing-key", str(key), *SHORT])
    assert refused.exit_code == 2
    assert "the signing key 'ctl-1' is not a valid key of the keyring: key 'ctl-1' is revoked" in _text(refused.output)


def test_user_errors_of_the_signed_mode_exit_2_with_one_message(tmp_path: Path) -> None:
    assert runner.invoke(app, ["keys", "new", "--key-id", "a", "--out", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["keys", "new", "--key-id", "a", "--out", str(tmp_path)])
    assert again.exit_code == 2 and "exists; a key is never overwritten" in _text(again.output)
    unsigned = runner.invoke(app, ["replay", "--out", str(tmp_path / "r"), "--keyring", str(tmp_path / "keyring.json"),
                                   *SHORT])
    assert unsigned.exit_code == 2 and "has no signing key" in _text(unsigned.output)
    lab = runner.invoke(app, ["replay", "--out", str(tmp_path / "lab"), *SHORT])
    assert lab.exit_code == 0 and "unsigned mode" in _text(lab.output)
