"""Configuration: found, validated once, one-line errors naming the key, secrets from env or files."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from interestd.config import Settings, load_settings, settings_for_display
from interestd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def _load(tmp_path: Path, text: str, **environ: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ={"HOME": str(tmp_path), **environ})


def test_the_example_config_loads() -> None:
    settings = load_settings(EXAMPLE, environ={"HOME": "/nonexistent"})
    assert settings.general.phone_region == "RU"
    assert settings.database_url.startswith("sqlite:///")


def _keys(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(section, key) for every setting, sections as written in TOML ("imap", "managers", ...)."""
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nested = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            found.extend(_keys(nested[0], f"{prefix}{name}."))
        else:
            found.append((prefix.rstrip("."), field.alias or name))
    return found


def _example_sections() -> dict[str, str]:
    """Text of each [section] / [[section]] of the example, keyed by its dotted name."""
    text = EXAMPLE.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        header = re.match(r"^\s*#?\s*\[\[?([\w.]+)\]\]?\s*$", line)
        if header:
            current = header.group(1)
            sections.setdefault(current, "")
            continue
        sections[current] = sections.get(current, "") + line + "\n"
    return sections


def test_every_setting_is_documented_in_the_example() -> None:
    sections = _example_sections()
    missing = []
    for section, key in _keys(Settings):
        # Keys of a nested table may be documented inline in the parent table: away = [{ from = ..., to = ... }].
        body = sections.get(section, "") + sections.get(section.rpartition(".")[0], "")
        # A key is documented on its own line ("# key = default"), or inside an inline table ({ key = ... }).
        if not re.search(rf"(?:^\s*#?\s*|[{{,]\s*){re.escape(key)}\s*=", body, re.MULTILINE):
            missing.append(f"[{section}] {key}")
    assert missing == [], f"settings missing from config.example.toml: {missing}"


def test_every_example_key_is_a_setting() -> None:
    """The reverse: the example documents nothing that does not exist (it would be an error to copy)."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    Settings.model_validate(data)  # raises on any unknown key


def test_no_file_gives_defaults_with_sqlite_in_the_xdg_data_dir(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")})
    assert settings.source is None
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'interestd' / 'interestd.db'}"


def test_config_is_found_in_the_xdg_config_dir(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "interestd" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('[general]\nphone_region = "KZ"\n')
    settings = load_settings(None, environ={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert settings.source == path and settings.general.phone_region == "KZ"


def test_interestd_config_variable_wins_over_the_xdg_dir(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.toml"
    chosen.write_text('[general]\nphone_region = "BY"\n')
    settings = load_settings(None, environ={"HOME": str(tmp_path), "INTERESTD_CONFIG": str(chosen)})
    assert settings.general.phone_region == "BY"


def test_database_url_variable_overrides_the_file(tmp_path: Path) -> None:
    settings = _load(
        tmp_path, '[database]\nurl = "sqlite:////tmp/a.db"\n', INTERESTD_DATABASE_URL="sqlite:////tmp/b.db"
    )
    assert settings.database_url == "sqlite:////tmp/b.db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[general]\nphone_regoin = 'RU'\n", "general.phone_regoin: unknown key"),
        ("[imap_typo]\nhost = 'x'\n", "imap_typo: unknown key"),
        ("[limits]\nbatch_size = 'many'\n", "limits.batch_size: Input should be a valid integer"),
        ("[general]\ntimezone = 'Mars/Olympus'\n", "general.timezone: unknown time zone 'Mars/Olympus'"),
        ("[database]\nbusy_timeout = 'soon'\n", "database.busy_timeout: expected a duration"),
        ("[database]\npassword = 'hunter2'\n", "database.password: unknown key (secrets are never read from the file"),
        ("[database]\nurl = 'postgresql://u:hunter2@h/db'\n", "database.url: the URL carries a password"),
        ("[general\n", "invalid TOML"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    error = str(caught.value)
    assert message in error
    assert "\n" not in error
    assert "hunter2" not in error


def test_secrets_come_from_env_or_file_and_are_masked(tmp_path: Path) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cr3t/p@ss\n")
    settings = _load(
        tmp_path,
        f'[database]\nurl = "postgresql+psycopg://interestd@db.example.lan/interestd?sslmode=verify-full"\n'
        f'password_file = "{secret}"\n',
    )
    assert settings.database_url == (
        "postgresql+psycopg://interestd:s3cr3t%2Fp%40ss@db.example.lan/interestd?sslmode=verify-full"
    )
    shown = settings_for_display(settings)
    assert "s3cr3t" not in str(shown)
    assert shown["database"]["password"] == "***"
    assert shown["database"]["effective_url"] == (
        "postgresql+psycopg://interestd:***@db.example.lan/interestd?sslmode=verify-full"
    )


def test_a_missing_secret_variable_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"database\.password_env: environment variable DB_PW is not set"):
        _load(tmp_path, '[database]\nurl = "postgresql+psycopg://u@h/d"\npassword_env = "DB_PW"\n')


def test_a_bare_secret_file_name_is_read_from_systemd_credentials(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "db-password").write_text("from-systemd")
    settings = _load(
        tmp_path,
        '[database]\nurl = "postgresql+psycopg://u@h/d?sslmode=require"\npassword_file = "db-password"\n',
        CREDENTIALS_DIRECTORY=str(credentials),
    )
    assert settings.secret("database.password") == "from-systemd"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "interestd", *args], capture_output=True, text=True, env=env)


def test_cli_config_error_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[limits]\nbatch_size = 0\n")
    result = _run("--config", str(path), "check-config")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("interestd: error: ") and "limits.batch_size" in lines[0]


def test_check_config_prints_settings_with_secrets_masked(tmp_path: Path) -> None:
    import os

    path = tmp_path / "config.toml"
    path.write_text(
        '[database]\nurl = "postgresql+psycopg://interestd@db/interestd?sslmode=require"\npassword_env = "DB_PW"\n'
    )
    result = _run("--config", str(path), "check-config", env={**os.environ, "DB_PW": "hunter2"})
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert 'password = "***"' in result.stdout
    assert 'effective_url = "postgresql+psycopg://interestd:***@db/interestd?sslmode=require"' in result.stdout


def _commented_block(header: str) -> str:
    """The example's commented-out table starting at `header`, uncommented (up to the first blank line)."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"# {header}")
    block = []
    for line in lines[start:]:
        if not line.strip():
            break
        block.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
    return "\n".join(block)


@pytest.mark.parametrize("header", ["[imap]", "[[mailboxes]]", "[[products]]", "[[custom_parsers]]", "[[managers]]"])
def test_the_commented_examples_are_valid_when_uncommented(tmp_path: Path, header: str) -> None:
    text = _commented_block(header)
    # Documentation lines inside a block (plain prose) are comments in TOML too once "# " is removed: drop them.
    text = "\n".join(line for line in text.splitlines() if re.match(r"^\s*(\[|[\w.]+\s*=)", line))
    environ = {"INTERESTD_IMAP_PASSWORD": "x", "INTERESTD_SALES_PASSWORD": "x", "INTERESTD_SMTP_PASSWORD": "x"}
    text = text.replace('password_file = "imap-password"\n', "").replace('password_file = "sales-password"\n', "")
    text = re.sub(r"^password_file = .*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"^ca_file = .*$", "", text, flags=re.MULTILINE)
    settings = _load(tmp_path, text, **environ)
    assert settings.model_dump()
