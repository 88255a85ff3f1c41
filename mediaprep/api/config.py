"""Settings for talking to the service: argument > config file > environment > default.

The config file is TOML (``~/.config/mediaprep/config.toml``, or ``$XDG_CONFIG_HOME``), with
top-level keys ``api_key``, ``base_url``, ``create_path``, ``task_path``, ``provider`` and
``timeout`` (seconds to wait for each answer)::

    base_url = "https://api.example.com"
    api_key = "sk-..."
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_API_KEY: Final = "MEDIAPREP_API_KEY"
ENV_BASE_URL: Final = "MEDIAPREP_BASE_URL"
DEFAULT_PROVIDER: Final = "kirin"
CONFIG_KEYS: Final = ("api_key", "base_url", "create_path", "task_path", "provider", "timeout")
#: Key prefixes such as ``sk-`` name the kind of key, not the key: safe to show.
_KEY_PREFIX = re.compile(r"^[A-Za-z]{2,4}[-_]")
#: Keys shorter than this are shown as ``***`` only.
_MASK_MIN_LENGTH = 12


class Secret:
    """A secret string whose ``repr`` and ``str`` never show it (``sk-...abcd`` or ``***``)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    @property
    def masked(self) -> str:
        """The secret with at most its last 4 characters shown."""
        if len(self._value) < _MASK_MIN_LENGTH:
            return "***"
        match = _KEY_PREFIX.match(self._value)
        return f"{match.group(0) if match else ''}...{self._value[-4:]}"

    def __repr__(self) -> str:
        return f"Secret('{self.masked}')"

    def __str__(self) -> str:
        return self.masked

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Where and how to reach the service. ``warnings`` are for the user (the CLI prints them)."""

    api_key: Secret | None = None
    base_url: str | None = None
    create_path: str | None = None
    task_path: str | None = None
    provider: str = DEFAULT_PROVIDER
    timeout: float | None = None
    config_path: Path | None = None
    warnings: tuple[str, ...] = ()


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/mediaprep/config.toml``, else ``~/.config/mediaprep/config.toml``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mediaprep" / "config.toml"


def read_config(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The config file's values and warnings (a file others can read).

    Raises:
        ConfigError: the file cannot be read, is not TOML, or holds an unknown key or a value of
            the wrong type.
    """
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(CONFIG_KEYS)}"
        )
    for key, value in data.items():
        wanted: tuple[type, ...] = (int, float) if key == "timeout" else (str,)
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise ConfigError(
                f"{path}: {key} must be a {'number' if key == 'timeout' else 'string'}"
            )
    if "timeout" in data and data["timeout"] <= 0:
        raise ConfigError(f"{path}: timeout must be a positive number of seconds")
    warnings: list[str] = []
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(
            f"{path} can be read by other users (mode {stat.S_IMODE(mode):o}); it may hold "
            f"your API key: chmod 600 {path}"
        )
    return data, warnings


def load_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    config_path: str | os.PathLike[str] | None = None,
    provider: str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from the arguments, then the config file, then the environment, then defaults.

    Args:
        api_key: the API key, when given as an argument.
        base_url: the service's base URL, when given as an argument.
        config_path: an explicit config file (must exist); without it the default file is read
            when it exists.
        provider: the provider name, when given as an argument.
        timeout: seconds to wait for each answer, when given as an argument.
        env: the environment (``os.environ`` when None).

    Raises:
        ConfigError: the config file cannot be used.
    """
    env = os.environ if env is None else env
    path = Path(config_path) if config_path is not None else default_config_path(env)
    used = config_path is not None or path.is_file()
    file_values: dict[str, Any] = {}
    warnings: list[str] = []
    if used:
        file_values, warnings = read_config(path)

    def pick(argument: str | None, key: str, env_var: str | None = None) -> str | None:
        if argument:
            return argument
        if file_values.get(key):
            return str(file_values[key])
        if env_var is not None and env.get(env_var):
            return env[env_var]
        return None

    key = pick(api_key, "api_key", ENV_API_KEY)
    url = pick(base_url, "base_url", ENV_BASE_URL)
    return Settings(
        api_key=Secret(key.strip()) if key else None,
        base_url=url.strip().rstrip("/") if url else None,
        create_path=pick(None, "create_path"),
        task_path=pick(None, "task_path"),
        provider=pick(provider, "provider") or DEFAULT_PROVIDER,
        timeout=timeout if timeout is not None else _float(file_values.get("timeout")),
        config_path=path if used else None,
        warnings=tuple(warnings),
    )


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
