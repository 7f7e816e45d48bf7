"""Reading the DJDEMO_* environment: typed getters and the env-file loader.

The deployed app gets its whole configuration from one environment file that systemd
loads (EnvironmentFile=). ``djdemo-manage --env-file PATH`` reads the same file for
commands run by hand or by Ansible (migrate, collectstatic, ensure_admin).
"""
import os

from django.core.exceptions import ImproperlyConfigured

PREFIX = "DJDEMO_"
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def get(name, default=""):
    """The value of DJDEMO_<name>, stripped; ``default`` when unset or empty."""
    value = os.environ.get(PREFIX + name, "").strip()
    return value if value else default


def get_bool(name, default):
    raw = os.environ.get(PREFIX + name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ImproperlyConfigured(f"{PREFIX}{name} must be a boolean (1/0, true/false, yes/no, on/off), not {raw!r}")


def get_int(name, default):
    raw = get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{PREFIX}{name} must be an integer, not {raw!r}") from None


def get_list(name):
    """A comma-separated list; blanks dropped."""
    return [item.strip() for item in get(name).split(",") if item.strip()]


def get_choice(name, choices, default):
    value = get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{PREFIX}{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def parse_env_file(text):
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (the subset an env file needs).

    Blank lines and lines starting with # or ; are skipped. A value wholly in single quotes is
    taken literally; in double quotes, backslash escapes the next character. Unquoted values
    are taken as they stand, surrounding whitespace removed.
    """
    result = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum() or key[0].isdigit():
            raise ValueError(f"line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            out, chars = [], iter(value[1:-1])
            for char in chars:
                out.append(next(chars, "\\") if char == "\\" else char)
            value = "".join(out)
        result[key] = value
    return result


def load_env_file(path, environ=None):
    """Put the file's variables into the environment. Variables already set win, so
    ``DJDEMO_DEBUG=1 djdemo-manage --env-file ...`` overrides one value for one command."""
    environ = os.environ if environ is None else environ
    with open(path, encoding="utf-8") as handle:
        for key, value in parse_env_file(handle.read()).items():
            environ.setdefault(key, value)
