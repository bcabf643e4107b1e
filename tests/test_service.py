"""``python run.py service``: the systemd unit for this install."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tars_actors.ops.service import ENV_FILE, open_files_limit, service_main, service_unit
from tars_actors.runtime.settings import Settings

# -- the systemd unit --------------------------------------------------------------------------


def unit_lines(unit: str) -> list[str]:
    return [line for line in unit.splitlines() if line and not line.startswith("#")]


def test_the_unit_runs_this_install_with_its_settings(tmp_path: Path) -> None:
    python = tmp_path / "venv" / "bin" / "python"
    unit = service_unit(
        tmp_path / "settings.toml", python=os.fspath(python), workdir=tmp_path, user="tars"
    )
    lines = unit_lines(unit)
    assert f"ExecStart={python} {tmp_path}/run.py --settings {tmp_path}/settings.toml" in lines
    assert f"WorkingDirectory={tmp_path}" in lines
    assert f"EnvironmentFile=-{ENV_FILE}" in lines
    for expected in [
        "User=tars",
        "Restart=on-failure",
        "RestartSec=5",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=90",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StandardOutput=journal",
        "StandardError=journal",
        "After=network-online.target",
        "Wants=network-online.target",
        "WantedBy=multi-user.target",
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        "ProtectSystem=full",
    ]:
        assert expected in lines
    assert lines.index("[Unit]") < lines.index("[Service]") < lines.index("[Install]")
    assert "sudo tee /etc/systemd/system/tars.service" in unit
    assert "systemctl daemon-reload && sudo systemctl enable --now tars" in unit
    assert "journalctl -u tars -f" in unit
    assert f"install -m 600 /dev/null {ENV_FILE}" in unit


def test_the_unit_makes_paths_absolute_and_quotes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install = tmp_path / "my 100% tars"
    install.mkdir()
    monkeypatch.chdir(install)
    unit = service_unit(Path("conf/settings.toml"), python="python3", workdir=Path("."), user=None)
    lines = unit_lines(unit)
    [exec_start] = [line for line in lines if line.startswith("ExecStart=")]
    python = shutil.which("python3")
    assert python is not None
    escaped = os.fspath(install).replace("%", "%%")
    assert exec_start == (
        f'ExecStart={python} "{escaped}/run.py" --settings "{escaped}/conf/settings.toml"'
    )
    # WorkingDirectory= takes the rest of the line verbatim: no quotes, only % doubled.
    assert f"WorkingDirectory={escaped}" in lines
    assert not any(line.startswith("User=") for line in lines)


def test_a_path_systemd_cannot_express_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="control character"):
        service_unit(tmp_path / "a\nb.toml", workdir=tmp_path, user=None)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    install = tmp_path / "with space %"
    install.mkdir()
    unit_file = tmp_path / "tars.service"
    unit_file.write_text(
        service_unit(install / "settings.toml", workdir=install, user=None), encoding="utf-8"
    )
    verified = subprocess.run(
        ["systemd-analyze", "verify", os.fspath(unit_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr


def test_service_main_prints_a_unit_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = {
        "TWILIO_ACCOUNT_SID": "ACsecretsid000000000000000000000",
        "TWILIO_AUTH_TOKEN": "very-secret-token",
        "GEMINI_API_KEY": "very-secret-gemini-key",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text("", encoding="utf-8")
    out = io.StringIO()
    assert service_main(settings_file, stdout=out) == 0
    unit = out.getvalue()
    for value in secrets.values():
        assert value not in unit
    assert capsys.readouterr().err == ""
    install = Path(__file__).resolve().parent.parent
    lines = unit_lines(unit)
    assert f"ExecStart={sys.executable} {install}/run.py --settings {settings_file}" in lines
    assert f"WorkingDirectory={install}" in lines
    for line in lines:
        if line.startswith(("ExecStart=", "WorkingDirectory=", "EnvironmentFile=")):
            value = line.partition("=")[2].lstrip("-")
            assert Path(value.split()[0]).is_absolute(), line


def test_service_main_warns_about_a_missing_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    assert service_main(tmp_path / "nope.toml", stdout=out) == 0
    assert "does not exist yet" in capsys.readouterr().err
    assert "[Service]" in out.getvalue()


def test_run_py_wires_the_twilio_and_service_commands(tmp_path: Path) -> None:
    """``python run.py twilio check`` and ``python run.py service`` reach these functions."""
    from tars_actors.ops.cli import main as cli_main

    out = io.StringIO()
    assert cli_main(["--settings", str(tmp_path / "missing.toml"), "service"], stdout=out) == 0
    assert "ExecStart=" in out.getvalue()
    assert "missing.toml" in out.getvalue()


def limit_nofile(unit: str) -> int:
    [line] = [line for line in unit_lines(unit) if line.startswith("LimitNOFILE=")]
    return int(line.partition("=")[2])


def test_the_unit_raises_the_open_files_limit_above_systemds_default(tmp_path: Path) -> None:
    unit = service_unit(tmp_path / "settings.toml", workdir=tmp_path, user=None)
    assert limit_nofile(unit) == open_files_limit(Settings()) == 4096
    assert "LimitNOFILE" in unit.partition("[Service]")[0]  # the header says how it is computed


def test_the_open_files_limit_fits_twice_the_connections_the_settings_allow() -> None:
    big = Settings().with_overrides(
        {"server.max_connections": 5000, "sessions.max_concurrent": 100}
    )
    # 5,000 server connections + 2 x 100 model connections + 3 x (100 + 12) database
    # descriptors + 128 = 5,664 at once; doubled and rounded up to a multiple of 1,024.
    assert open_files_limit(big) == 12288
    more = big.with_overrides({"server.max_connections": 6000})
    assert open_files_limit(more) >= 2 * 6000


def test_service_main_sizes_the_limit_from_the_settings_file(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text("[server]\nmax_connections = 5000\n", encoding="utf-8")
    out = io.StringIO()
    assert service_main(settings_file, stdout=out) == 0
    assert limit_nofile(out.getvalue()) >= 2 * 5000


def test_service_main_refuses_settings_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text("[server]\nmax_connections = 0\n", encoding="utf-8")
    out = io.StringIO()
    assert service_main(settings_file, stdout=out) == 2
    assert out.getvalue() == ""
    assert "[server] max_connections: must be at least 1, got 0" in capsys.readouterr().err
