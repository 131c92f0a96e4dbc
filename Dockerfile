# syntax=docker/dockerfile:1
# The one image of the platform. docker-compose runs every service of ours from it: the Dagster webserver, daemon
# and user-code server, the MLflow tracking server, and the Spark master and worker. One image means the Spark
# executors run the driver's exact PySpark and Python, and the MLflow server the client's exact MLflow.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Java for Spark (driver and executors); procps because Spark's launch scripts call `ps`; tini reaps the JVMs and
# subprocesses a run leaves behind and forwards signals, so `docker compose stop` shuts services down cleanly.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin platform

WORKDIR /opt/platform

# Dependencies first, in a layer of their own that a code change does not invalidate. The project is installed
# editable: settings.REPO_ROOT is the folder above the package, so the package must stay beside dbt_project/.
COPY pyproject.toml README.md ./
RUN mkdir -p dagster_project spark_jobs examples \
 && touch dagster_project/__init__.py spark_jobs/__init__.py examples/__init__.py \
 && pip install -e .

COPY --chown=platform:platform . .

# Everything the services write lives in volumes mounted at these paths (docker-compose.yml); a named volume
# takes its owner from the image on first use, so the non-root user can write to it.
ENV PLATFORM_DATA_ROOT=/data \
    PLATFORM_JARS_CACHE=/cache/jars \
    DAGSTER_HOME=/opt/dagster/home \
    SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark
COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml
RUN mkdir -p /data /cache/jars /opt/dagster/home/storage \
 && chown -R platform:platform /data /cache /opt/dagster

USER platform

# Built into the image, so no container fetches anything when it starts:
# - the Delta jars, from Maven Central into PLATFORM_JARS_CACHE (the driver ships them to the executors);
# - the dbt manifest the feature assets are defined from (what `make manifest` does).
# Then the image is only good if the definitions load: fail the build, not the first deployment.
RUN python -m dagster_project.cli jars \
 && python -m dagster_project.cli manifest \
 && python -c "from dagster_project.definitions import defs; print(len(defs().resolve_all_asset_specs()), 'assets')"

EXPOSE 3000 4000 5000 7077 8000 8080 8081
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "dagster_project.definitions", \
     "--location-name", "churn_platform"]
