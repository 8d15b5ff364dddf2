from dataclasses import fields
from pathlib import Path

import pytest

from inference_service.config import ENV_PREFIX, Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 6666, 1)
    assert settings.max_body_bytes == 1024 * 1024 and settings.max_rows == 10_000
    assert settings.keys() == ()


def test_every_field_reads_its_prefixed_variable() -> None:
    settings = Settings.from_env(
        {
            "INFERENCE_HOST": "0.0.0.0",
            "INFERENCE_PORT": "8080",
            "INFERENCE_WORKERS": "3",
            "INFERENCE_MODEL_DIR": "/srv/models",
            "INFERENCE_MAX_ROWS": "5",
            "INFERENCE_ACCESS_LOG": "false",
            "INFERENCE_RELOAD_INTERVAL": "0.5",
        }
    )
    assert settings.host == "0.0.0.0" and settings.port == 8080 and settings.workers == 3
    assert settings.model_dir == Path("/srv/models")
    assert settings.max_rows == 5 and settings.access_log is False
    assert settings.reload_interval == 0.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INFERENCE_PORT": "http"}, "INFERENCE_PORT must be an integer, got 'http'"),
        ({"INFERENCE_PORT": "70000"}, "INFERENCE_PORT must be 1-65535, got 70000"),
        ({"INFERENCE_WORKERS": "0"}, "INFERENCE_WORKERS must be at least 1, got 0"),
        (
            {"INFERENCE_ACCESS_LOG": "maybe"},
            "INFERENCE_ACCESS_LOG must be true or false, got 'maybe'",
        ),
        ({"INFERENCE_LOG_FORMAT": "xml"}, "INFERENCE_LOG_FORMAT must be json or text, got 'xml'"),
        ({"INFERENCE_LOG_LEVEL": "LOUD"}, "INFERENCE_LOG_LEVEL must be a logging level name"),
        ({"INFERENCE_MAX_ROWS": "0"}, "INFERENCE_MAX_ROWS must be at least 1, got 0"),
        ({"INFERENCE_RELOAD_INTERVAL": "-1"}, "INFERENCE_RELOAD_INTERVAL must be 0 \\(off\\)"),
        ({"INFERENCE_RELOAD_INTERVAL": "nan"}, "INFERENCE_RELOAD_INTERVAL must be 0 \\(off\\)"),
        ({"INFERENCE_THREADS": "-2"}, "INFERENCE_THREADS must be 0 \\(automatic\\) or more"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_flags_win_and_the_environments_bad_value_is_not_read() -> None:
    settings = Settings.from_env({"INFERENCE_PORT": "abc"}, overrides={"port": 8080})
    assert settings.port == 8080


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/run/secrets/missing-keys", "names the file /run/secrets/missing-keys, which cannot be"),
        (",", "the setting holds no key"),
        (" , ,", "the setting holds no key"),
        ("clé-secrète", "not printable ASCII"),
    ],
)
def test_api_keys_fail_closed(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env({"INFERENCE_API_KEYS": value})


def test_api_keys_file_with_no_key_or_a_non_ascii_key_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match=f"the file {empty} holds no key"):
        Settings.from_env({"INFERENCE_API_KEYS": str(empty)})
    accented = tmp_path / "accented"
    accented.write_text("good\nmötley\n")
    with pytest.raises(ValueError, match="key 2 of the file"):
        Settings.from_env({"INFERENCE_API_KEYS": str(accented)})


def test_an_inline_key_may_hold_a_slash() -> None:
    key = "abc/def+ghi=="  # pragma: allowlist secret
    assert Settings(api_keys=key).keys() == (key,)


def test_api_keys_from_a_list_or_a_file(tmp_path: Path) -> None:
    assert Settings(api_keys=" a, b ,,").keys() == ("a", "b")
    path = tmp_path / "keys"
    path.write_text("first\n\nsecond\n")
    assert Settings(api_keys=str(path)).keys() == ("first", "second")


def test_the_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [
        name for f in fields(Settings) if f"`{(name := ENV_PREFIX + f.name.upper())}`" not in readme
    ]
    assert missing == []
