from pathlib import Path

import pytest

from inference_service.config import Settings


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
        ({"INFERENCE_PORT": "http"}, "not a valid int"),
        ({"INFERENCE_PORT": "70000"}, "PORT must be 1-65535"),
        ({"INFERENCE_WORKERS": "0"}, "WORKERS must be at least 1"),
        ({"INFERENCE_ACCESS_LOG": "maybe"}, "not a valid bool"),
        ({"INFERENCE_LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or text"),
        ({"INFERENCE_MAX_ROWS": "0"}, "must be positive"),
    ],
)
def test_bad_values_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_api_keys_from_a_list_or_a_file(tmp_path: Path) -> None:
    assert Settings(api_keys=" a, b ,,").keys() == ("a", "b")
    path = tmp_path / "keys"
    path.write_text("first\n\nsecond\n")
    assert Settings(api_keys=str(path)).keys() == ("first", "second")
