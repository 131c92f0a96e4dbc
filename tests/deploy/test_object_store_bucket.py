"""The object store's bucket for a service that writes there (MLflow's server in docker-compose, whose entrypoint
this is): ``python -m dagster_project.cli bucket s3://NAME -- COMMAND`` against a real S3 API server (moto's), with
AWS's own variables only, creates the bucket once, finds it the next time, and then runs the command."""

import os
import subprocess
import sys

import pyarrow.fs as pafs
from s3_server import S3Server

from dagster_project.settings import REPO_ROOT


def test_the_bucket_is_created_once_then_the_command_runs(s3_server: S3Server) -> None:
    env = {**os.environ, **s3_server.aws_env(), "AWS_ENDPOINT_URL": s3_server.endpoint_url,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    then = [sys.executable, "-c", "import sys; print('the command ran with', sys.argv[1:])", "--port=5000"]
    outputs = []
    command = [sys.executable, "-m", "dagster_project.cli", "bucket", "s3://test-artifacts/mlflow", "--", *then]
    outputs = []
    for _ in range(2):
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout.splitlines())
    assert outputs[0] == ["bucket test-artifacts: created", "the command ran with ['--port=5000']"]
    assert outputs[1] == ["bucket test-artifacts: there", "the command ran with ['--port=5000']"]
    filesystem = s3_server.object_store().filesystem()
    with filesystem.open_output_stream("test-artifacts/mlflow/probe.txt") as out:
        out.write(b"written")  # the bucket takes writes
    listed = filesystem.get_file_info(pafs.FileSelector("test-artifacts", recursive=True))
    assert [info.path for info in listed if info.type == pafs.FileType.File] == ["test-artifacts/mlflow/probe.txt"]
