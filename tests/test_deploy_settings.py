"""Deploy settings: environment, flags, and refusals that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_service.deploy.settings import DeploySettings, container_env


def test_the_rate_limit_is_off_unless_set() -> None:
    assert DeploySettings.load({}, {}).proxy_rate == 0
    assert DeploySettings.load({"INFERENCE_PROXY_RATE": "500"}, {}).proxy_rate == 500


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"INFERENCE_PROXY_RATE": "-1"}, "INFERENCE_PROXY_RATE and INFERENCE_PROXY_BURST"),
        ({"INFERENCE_CANARY_MAX_ERROR_RATE": "1.5"}, "INFERENCE_CANARY_MAX_ERROR_RATE must be"),
        ({"INFERENCE_CANARY_MAX_P99_RATIO": "0.5"}, "INFERENCE_CANARY_MAX_P99_RATIO must be"),
        ({"INFERENCE_CANARY_SECONDS": "0"}, "INFERENCE_CANARY_SECONDS must be positive"),
        ({"INFERENCE_CANARY_MIN_REQUESTS": "abc"}, "INFERENCE_CANARY_MIN_REQUESTS='abc'"),
        ({"INFERENCE_PROXY_DIR": "/" + "d" * 80}, "INFERENCE_PROXY_DIR=/ddd"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as refused:
        DeploySettings.load(environ, {})
    assert message in str(refused.value)


def test_a_socket_path_too_long_for_the_kernel_is_refused() -> None:
    settings = DeploySettings.load({"INFERENCE_PROXY_DIR": "/srv/" + "p" * 40}, {})
    assert settings.proxy_dir == Path("/srv/" + "p" * 40)
    with pytest.raises(ValueError, match="Unix sockets allow 107"):
        DeploySettings.load({"INFERENCE_PROXY_DIR": "/srv/" + "p" * 60}, {})


def test_the_deploy_owns_the_socket_setting_and_passes_the_service_ones() -> None:
    environ = {
        "INFERENCE_UDS": "/elsewhere.sock",
        "INFERENCE_PROXY_DIR": "/x",
        "INFERENCE_CANARY_SECONDS": "5",
        "INFERENCE_WORKERS": "2",
        "INFERENCE_LOG_LEVEL": "",
    }
    assert container_env(environ) == ["INFERENCE_WORKERS"]
