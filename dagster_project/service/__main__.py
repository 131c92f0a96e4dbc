"""``python -m dagster_project.service``: the prediction service on ``settings.serving`` host and port (127.0.0.1
by default; the container sets 0.0.0.0), one process, uvicorn's fast loop and parser (uvloop, httptools)."""

import logging

import uvicorn

from dagster_project.service.app import create_app
from dagster_project.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.serving.host,
        port=settings.serving.port,
        access_log=False,  # one line per prediction would cost more than the prediction; /metrics counts them
        log_level="info",
    )


if __name__ == "__main__":
    main()
