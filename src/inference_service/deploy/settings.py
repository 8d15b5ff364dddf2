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
    "proxy_dir": "INFERENCE_PROXY_DIR",
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
    "canary_seconds": "INFERENCE_CANARY_SECONDS",
    "canary_min_requests": "INFERENCE_CANARY_MIN_REQUESTS",
    "canary_max_error_rate": "INFERENCE_CANARY_MAX_ERROR_RATE",
    "canary_max_p99_ratio": "INFERENCE_CANARY_MAX_P99_RATIO",
    "canary_p99_allowance": "INFERENCE_CANARY_P99_ALLOWANCE",
    "canary_max_label_distance": "INFERENCE_CANARY_MAX_LABEL_DISTANCE",
}
# Fixed by the image (it carries its model) or by the deploy (it listens on the release's
# socket), so never passed through from the deploy tool's environment.
SOCKET_NAME = "server.sock"
"""Each release's socket, in its own directory."""
# sockaddr_un's path on Linux, less its final NUL.
MAX_SOCKET_PATH = 107
IMAGE_OWNED = {"INFERENCE_HOST", "INFERENCE_PORT", "INFERENCE_MODEL_DIR", "INFERENCE_UDS"}


@dataclass(frozen=True)
class DeploySettings:
    proxy_port: int = 6666
    """Public port nginx listens on."""
    proxy_conf: Path = Path("/etc/nginx/conf.d/inference-service.conf")
    """The generated nginx config (inside nginx's `http {}` through conf.d/*.conf)."""
    proxy_dir: Path = Path("/var/lib/inference-service/proxy")
    """Routing directory: the shared `locations.conf`, the release sockets and the symlinks nginx
    forwards through. nginx's worker user must be able to reach it (install checks)."""
    proxy_access_log: str = "/var/log/nginx/inference-service.access.log"
    """nginx access log for the service, one JSON object per line."""
    proxy_rate: int = 0
    """Requests per second allowed per client IP (nginx limit_req), excess gets 429; 0: no limit."""
    proxy_burst: int = 0
    """Requests per client IP allowed above the rate before 429s start (with a rate set)."""
    proxy_read_timeout: int = 30
    """Seconds nginx waits for the container's answer."""
    state_dir: Path = Path("/var/lib/inference-service")
    """Holds state.json (current and previous release, the last canary) and the deploy lock."""
    nginx: str = "nginx"
    """Command prefix for nginx; on the VM `sudo -n /usr/sbin/nginx`."""
    ready_timeout: float = 60.0
    """Seconds a new container has to become ready."""
    drain_seconds: float = 35.0
    """Upper bound on waiting for requests in flight on the old release to finish."""
    stop_timeout: int = 25
    """Seconds `docker stop` allows the old container (it drains for 20 s itself) before SIGKILL."""
    container_prefix: str = "inference-service"
    """Container name prefix; also labels the containers this tool owns."""
    docker: str = "docker"
    """Command prefix for the Docker CLI."""
    canary_seconds: float = 300.0
    """How long a canary is watched before the verdict."""
    canary_min_requests: int = 100
    """Fewest requests the canary must answer in its window to be judged; fewer rolls it back."""
    canary_max_error_rate: float = 0.01
    """Largest share of 5xx answers the canary may give (the stable release's rate is added)."""
    canary_max_p99_ratio: float = 1.5
    """Largest canary p99 latency as a multiple of the stable release's p99 in the same window."""
    canary_p99_allowance: float = 0.010
    """Seconds of p99 difference never held against a canary (histogram buckets are coarse)."""
    canary_max_label_distance: float = 0.10
    """Largest total variation distance between the canary's and the stable release's shares of
    predicted labels (0: same distribution, 1: disjoint)."""

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
        if self.proxy_rate < 0 or self.proxy_burst < 0:
            raise ValueError(
                f"{ENV['proxy_rate']} and {ENV['proxy_burst']} must not be negative "
                f"(got {self.proxy_rate} and {self.proxy_burst}); a rate of 0 turns the limit off"
            )
        if self.ready_timeout <= 0 or self.drain_seconds < 0 or self.stop_timeout < 0:
            raise ValueError("ready timeout must be positive; drain and stop not negative")
        if not self.container_prefix.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"bad container prefix {self.container_prefix!r}")
        longest = len(
            f"{self.proxy_dir}/releases/{self.container_prefix}-YYYYmmdd-HHMMSS-xxxx/{SOCKET_NAME}"
        )
        if longest > MAX_SOCKET_PATH:
            raise ValueError(
                f"{ENV['proxy_dir']}={self.proxy_dir} with {ENV['container_prefix']}="
                f"{self.container_prefix} makes socket paths of {longest} bytes; Unix sockets "
                f"allow {MAX_SOCKET_PATH}: choose a shorter directory or prefix"
            )
        if self.canary_seconds <= 0 or self.canary_min_requests < 1:
            raise ValueError(
                f"{ENV['canary_seconds']} must be positive and "
                f"{ENV['canary_min_requests']} at least 1"
            )
        for name in ("canary_max_error_rate", "canary_max_label_distance"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{ENV[name]} must be between 0 and 1, got {getattr(self, name)}")
        if self.canary_max_p99_ratio < 1 or self.canary_p99_allowance < 0:
            raise ValueError(
                f"{ENV['canary_max_p99_ratio']} must be at least 1 and "
                f"{ENV['canary_p99_allowance']} not negative"
            )

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
