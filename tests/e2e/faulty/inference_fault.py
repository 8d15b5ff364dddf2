"""Installed only into the test's bad canary images: a release that degrades under traffic.

`INFERENCE_FAULT=errors` answers every other POST /inference with 500 once a worker has served
ten; `INFERENCE_FAULT=slow` adds 200 ms to every POST /inference. Both pass the deploy's smoke
test, as a release that degrades only under real traffic does. Loaded by a .pth file in the
server's worker processes (the ones with PROMETHEUS_MULTIPROC_DIR set), inside the metrics
middleware, so the release's own metrics see the fault.
"""

import itertools
import os
import time

MODE = os.environ.get("INFERENCE_FAULT", "")

if MODE and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import inference_service.app as _app_module

    _create_app = _app_module.create_app

    def create_app(*args, **kwargs):
        app = _create_app(*args, **kwargs)
        observed = app.wsgi_app
        while not hasattr(observed, "metrics"):  # the metrics middleware, under any other
            observed = observed.app
        inner = observed.app
        served = itertools.count()

        def faulty(environ, start_response):
            if environ.get("PATH_INFO") == "/inference":
                n = next(served)
                if MODE == "slow":
                    time.sleep(0.2)
                elif MODE == "errors" and n >= 10 and n % 2:
                    start_response("500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")])
                    return [b"injected fault\n"]
            return inner(environ, start_response)

        observed.app = faulty
        return app

    _app_module.create_app = create_app
