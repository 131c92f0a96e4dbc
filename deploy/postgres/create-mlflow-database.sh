#!/usr/bin/env bash
# Runs once, when the postgres container initializes an empty data volume (docker-entrypoint-initdb.d): the
# image creates $POSTGRES_DB (Dagster's storage); this adds MLflow's backend store beside it. Dagster and MLflow
# both have a table named `runs`, so they cannot share one database.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set db="${MLFLOW_POSTGRES_DB:?MLFLOW_POSTGRES_DB is not set}" <<'SQL'
select format('create database %I', :'db')
where not exists (select from pg_database where datname = :'db')\gexec
SQL
