"""``python run.py service``: a systemd unit that serves this install, with no secret in it."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import sys
from pathlib import Path
from typing import Final, TextIO

from tars_actors.runtime.settings import Settings, SettingsError, load_settings

__all__ = ["ENV_FILE", "open_files_limit", "service_main", "service_unit"]

#: Where the unit reads the secrets from (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, GEMINI_API_KEY,
#: and TARS_OWNER_PIN if set).
ENV_FILE: Final = Path("/etc/tars/tars.env")
#: Seconds systemd waits after SIGTERM: calls get [sessions] shutdown_grace_seconds (30 by
#: default) to finish, then the actors stop.
STOP_TIMEOUT_SECONDS: Final = 90

#: Threads besides the calls' that hold a database connection (the supervisors, router,
#: reminder scheduler, telephony, monitor, the daemon's own), rounded up.
_STEADY_THREADS: Final = 12
#: Descriptors open whatever the load: stdio, the log file, the event loops' selectors and
#: wake-up pipes, the listening sockets, pooled HTTPS to Twilio's REST API and the text model.
_BASELINE_FILES: Final = 128
#: systemd's own default soft limit is 1,024; never ask for less than this.
_MIN_OPEN_FILES: Final = 4096


def open_files_limit(settings: Settings) -> int:
    """``LimitNOFILE=`` for these settings: twice what TARS can hold open at once.

    At once: every server connection (``[server] max_connections``); two Live model
    connections per call (``[sessions] max_concurrent``; two while one is rotated); a
    database connection per call and per steady thread, three descriptors each (SQLite's
    file, its WAL and its shared-memory index); and a baseline. Doubled for what comes and
    goes (short HTTPS requests, a connection closing while its successor opens), rounded up
    to a multiple of 1,024, at least 4,096.
    """
    calls = settings.sessions.max_concurrent
    at_once = (
        settings.server.max_connections
        + 2 * calls
        + 3 * (calls + _STEADY_THREADS)
        + _BASELINE_FILES
    )
    return max(_MIN_OPEN_FILES, -(-2 * at_once // 1024) * 1024)


#: Exit codes of ``service``, as ``twilio``'s: printed, or paths systemd cannot express.
EXIT_OK: Final = 0
EXIT_SETTINGS: Final = 2

_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def _no_control_characters(text: str) -> str:
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError(f"{text!r} contains a control character; systemd cannot use it")
    return text


def _exec_word(text: str) -> str:
    """One ExecStart argument: ``%`` and ``$`` escaped, quoted when it has spaces and such."""
    _no_control_characters(text)
    if _PLAIN_WORD.fullmatch(text):
        return text.replace("%", "%%")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def _path_value(path: Path) -> str:
    """A path as a whole-line setting (WorkingDirectory=): taken verbatim but for ``%``."""
    text = _no_control_characters(os.fspath(path))
    if text != text.strip() or text.endswith("\\"):
        raise ValueError(f"{text!r}: systemd strips or joins what ends or starts this path")
    return text.replace("%", "%%")


def _absolute(path: Path) -> Path:
    # absolute(), not resolve(): a venv's python is a symlink that must stay the venv's.
    return Path(os.path.normpath(path.expanduser().absolute()))


def _absolute_python(python: str) -> Path:
    if os.sep not in python:
        found = shutil.which(python)
        if found is None:
            raise ValueError(f"{python!r} is not on PATH; give the interpreter's absolute path")
        python = found
    return _absolute(Path(python))


def service_unit(
    settings_path: Path,
    *,
    python: str = sys.executable,
    workdir: Path,
    user: str | None,
    env_file: Path = ENV_FILE,
    stop_timeout_seconds: int = STOP_TIMEOUT_SECONDS,
    open_files: int | None = None,
) -> str:
    """A systemd unit that serves TARS from ``workdir`` with ``settings_path``.

    Secrets stay in ``env_file``; the unit holds none. ``user`` None runs it as root.
    ``open_files`` is its ``LimitNOFILE=`` (None: :func:`open_files_limit` of the default
    settings). Raises ValueError for paths systemd cannot express.
    """
    nofile = open_files_limit(Settings()) if open_files is None else open_files
    settings_file = _absolute(settings_path)
    directory = _absolute(workdir)
    interpreter = _absolute_python(python)
    run_py = directory / "run.py"
    exec_start = " ".join(
        _exec_word(os.fspath(word)) for word in (interpreter, run_py, "--settings", settings_file)
    )
    shell_settings = _shell_word(os.fspath(settings_file))
    shell_run = f"{_shell_word(os.fspath(interpreter))} {_shell_word(os.fspath(run_py))}"
    env = os.fspath(env_file)
    user_line = (
        f"User={_no_control_characters(user)}"
        if user
        else "# User=tars  (without User= TARS runs as root; prefer an unprivileged account)"
    )
    return f"""\
# TARS: the phone assistant, served by systemd.
# Generated by `python run.py service` for the install in {directory}.
#
# Install:
#   {shell_run} --settings {shell_settings} service | sudo tee /etc/systemd/system/tars.service
#   sudo install -d -m 755 {os.path.dirname(env)}
#   sudo install -m 600 /dev/null {env} && sudoedit {env}
#     with one line each (the secrets live only in that file, never in this unit):
#     TWILIO_ACCOUNT_SID=AC...
#     TWILIO_AUTH_TOKEN=...
#     GEMINI_API_KEY=...
#     TARS_OWNER_PIN=...   (optional: 4 to 12 digits the owner types to prove a call is theirs)
#   sudo systemctl daemon-reload && sudo systemctl enable --now tars
#   journalctl -u tars -f
#
# `sudo systemctl reload tars` sends SIGHUP (reload settings); `stop` sends SIGTERM and
# waits up to {stop_timeout_seconds}s for live calls to finish. Relative paths in the settings
# (sqlite:///tars.db) are relative to WorkingDirectory, which must stay writable: with
# ProtectSystem=full, /usr, /boot and /etc are read-only to TARS.
#
# LimitNOFILE is twice what TARS can hold open at once with its settings ([server]
# max_connections, two model connections and a database connection per call in [sessions]
# max_concurrent, the steady threads' database connections, a baseline): run this command
# again after raising either.

[Unit]
Description=TARS phone assistant (Twilio + Gemini Live)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
{user_line}
WorkingDirectory={_path_value(directory)}
EnvironmentFile=-{_path_value(env_file)}
Environment=PYTHONUNBUFFERED=1
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec={stop_timeout_seconds}
LimitNOFILE={nofile}
StandardOutput=journal
StandardError=journal
SyslogIdentifier=tars
UMask=0027
NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=full

[Install]
WantedBy=multi-user.target
"""


def _shell_word(text: str) -> str:
    """``text`` quoted for the shell commands in the header comment."""
    if _PLAIN_WORD.fullmatch(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _current_user() -> str | None:
    """The user running this command; None for root (the unit then has no User=)."""
    uid = os.geteuid()
    if uid == 0:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _install_dir() -> Path:
    """The directory holding run.py: the checkout this module was imported from."""
    return Path(__file__).resolve().parents[2]


def service_main(settings_path: Path, *, stdout: TextIO | None = None) -> int:
    """``python run.py service``: print the systemd unit for this install and user."""
    out = stdout or sys.stdout
    settings = Settings()
    if not settings_path.is_file():
        print(
            f"tars: warning: settings file {_absolute(settings_path)} does not exist yet; "
            "the service will not start without it",
            file=sys.stderr,
        )
    else:
        try:
            settings = load_settings(settings_path)
        except SettingsError as error:
            for problem in error.problems:
                print(f"tars: {problem}", file=sys.stderr)
            return EXIT_SETTINGS
    try:
        unit = service_unit(
            settings_path,
            workdir=_install_dir(),
            user=_current_user(),
            open_files=open_files_limit(settings),
        )
    except ValueError as error:
        print(f"tars: {error}", file=sys.stderr)
        return EXIT_SETTINGS
    out.write(unit)
    return EXIT_OK
