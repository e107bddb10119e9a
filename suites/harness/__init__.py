"""The suites' one harness: what every suite under suites/ shares.

- gateway: the gateway binary on a free 127.0.0.1 port, from a directory of
  its own (so no developer's .env is read), until it answers; free ports;
  one POST helper.
- kinesis, kafka, pubsub, filesink: every record a sink stored, read back
  with the real clients (boto3 against a Kinesis emulator, confluent-kafka
  with `assign`, the Pub/Sub emulator's REST pull) or from the file sink's
  NDJSON.
- memory: a process's peak RSS, from /proc.
- venv.sh (a Python venv per requirements file), npm.sh (Node, Chromium and
  the npm packages of package.json).

The suites' shell entry points put suites/ on PYTHONPATH, so a suite
imports `harness.gateway` and never another suite's files.
"""
