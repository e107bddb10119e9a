"""The suites' one harness: what every suite under suites/ shares.

- gateway: the gateway binary on a free 127.0.0.1 port, from a directory of
  its own (so no developer's .env is read), until it answers; free ports;
  one POST helper.
- kinesis, kafka, pubsub, filesink: every record a sink stored, read back
  with the real clients (boto3 against a Kinesis emulator, confluent-kafka
  with `assign`, the Pub/Sub emulator's REST pull) or from the file sink's
  NDJSON.
- segment: one real SDK (segment-analytics-python) sending tracked events.
- memory: a process's peak RSS, from /proc.
- suite.sh, sourced by every suite's run.sh: ROOT, WORK, suites/ on
  PYTHONPATH (so a suite imports `harness.gateway` and never another
  suite's files), the gateway binary argument checked.
- venv.sh (a Python venv per requirements file), npm.sh (Node, Chromium and
  the npm packages of package.json).
"""
