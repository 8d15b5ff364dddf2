"""Deploy settings: INFERENCE_* environment variables, overridden by command-line flags."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

# The deploy tool's own settings; every other INFERENCE_* variable is passed to the container.
ENV = {
    "proxy_port": "INFERENCE_PROXY_PORT",
    "proxy_conf": "INFERENCE_PROXY_CONF",
    "proxy_access_log": "INFERENCE_PROXY_ACCESS_LOG",
    "proxy_rate": "INFERENCE_PROXY_RATE",
    "proxy_burst": "INFERENCE_PROXY_BURST",
    "proxy_read_timeout": "INFERENCE_PROXY_READ_TIMEOUT",
    "state_dir": "INFERENCE_DEPLOY_STATE_DIR",
    "nginx": "INFERENCE_NGINX",
    "ready_timeout": "INFERENCE_READY_TIMEOUT",
    "drain_seconds": "INFERENCE_DEPLOY_DRAIN_SECONDS",
    "stop_timeout": "INFERENCE_STOP_TIMEOUT",
    "container_prefix": "INFERENCE_CONTAINER_PREFIX",
    "docker": "INFERENCE_DOCKER",
}
# Fixed by the image (it listens on 0.0.0.0:6666 and carries its model), so never passed through.
IMAGE_OWNED = {"INFERENCE_HOST", "INFERENCE_PORT", "INFERENCE_MODEL_DIR"}


@dataclass(frozen=True)
class DeploySettings:
    proxy_port: int = 6666
    """Public port nginx listens on."""
    proxy_conf: Path = Path("/etc/nginx/conf.d/inference-service.conf")
    """The generated nginx config (inside nginx's `http {}` through conf.d/*.conf)."""
    proxy_access_log: str = "/var/log/nginx/inference-service.access.log"
    """nginx access log for the service, one JSON object per line."""
    proxy_rate: int = 100
    """Requests per second allowed per client IP (nginx limit_req); excess gets 429."""
    proxy_burst: int = 200
    """Requests per client IP allowed above the rate before 429s start."""
    proxy_read_timeout: int = 30
    """Seconds nginx waits for the container's answer."""
    state_dir: Path = Path("/var/lib/inference-service")
    """Holds state.json (current and previous release) and the deploy lock."""
    nginx: str = "nginx"
    """Command prefix for nginx; on the VM `sudo -n /usr/sbin/nginx`."""
    ready_timeout: float = 60.0
    """Seconds a new container has to become ready."""
    drain_seconds: float = 35.0
    """Upper bound on waiting for requests in flight through the old upstream to finish."""
    stop_timeout: int = 25
    """Seconds `docker stop` allows the old container (it drains for 20 s itself) before SIGKILL."""
    container_prefix: str = "inference-service"
    """Container name prefix; also labels the containers this tool owns."""
    docker: str = "docker"
    """Command prefix for the Docker CLI."""

    @classmethod
    def load(cls, environ: Mapping[str, str], overrides: Mapping[str, Any]) -> DeploySettings:
        values: dict[str, Any] = {}
        defaults = cls()
        for f in fields(cls):
            raw = environ.get(ENV[f.name], "")
            if raw:
                try:
                    values[f.name] = type(getattr(defaults, f.name))(raw)
                except ValueError:
                    raise ValueError(f"{ENV[f.name]}={raw!r} is not a valid {f.type}") from None
        settings = replace(cls(**values), **{k: v for k, v in overrides.items() if v is not None})
        settings.check()
        return settings

    def check(self) -> None:
        if not 0 < self.proxy_port < 65536:
            raise ValueError(f"proxy port must be 1-65535, got {self.proxy_port}")
        if self.proxy_rate < 1 or self.proxy_burst < 0:
            raise ValueError("proxy rate must be at least 1 and burst not negative")
        if self.ready_timeout <= 0 or self.drain_seconds < 0 or self.stop_timeout < 0:
            raise ValueError("ready timeout must be positive; drain and stop not negative")
        if not self.container_prefix.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"bad container prefix {self.container_prefix!r}")

    @property
    def nginx_cmd(self) -> list[str]:
        return shlex.split(self.nginx)

    @property
    def docker_cmd(self) -> list[str]:
        return shlex.split(self.docker)

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"


def container_env(environ: Mapping[str, str]) -> list[str]:
    """Names of the INFERENCE_* variables to hand to the container (values stay out of argv)."""
    own = set(ENV.values()) | IMAGE_OWNED
    return sorted(
        name
        for name, value in environ.items()
        if name.startswith("INFERENCE_") and name not in own and value != ""
    )
