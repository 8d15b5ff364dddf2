"""Installed only into the test's bad canary images: a release that degrades under traffic.

`INFERENCE_FAULT=errors` answers every other POST /inference with 500 once a worker has served
ten; `INFERENCE_FAULT=slow` adds 200 ms to every POST /inference. Both pass the deploy's smoke
test, as a release that degrades only under real traffic does. A .pth file imports this at
interpreter start; it wraps the app when `inference_service.app` is first imported, inside the
metrics middleware, so the release's own metrics see the fault.
"""

import importlib.abc
import importlib.util
import itertools
import os
import sys
import time

MODE = os.environ.get("INFERENCE_FAULT", "")
TARGET = "inference_service.app"


def _wrap(module):
    create_app = module.create_app

    def faulty_create_app(*args, **kwargs):
        app = create_app(*args, **kwargs)
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

    module.create_app = faulty_create_app


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module):
            execute(module)
            _wrap(module)

        loader.exec_module = exec_module
        return spec


if MODE:
    sys.meta_path.insert(0, _Finder())
