"""The file sink's records: one JSON object a line, with the fields of a
Kinesis `GetRecords` record (`Data` in base64, `PartitionKey`,
`SequenceNumber`) and the `ShardId`."""

import base64
import json


def read(path):
    """Every record in the file: (shard id, partition key, data bytes)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                records.append((r.get("ShardId", ""), r["PartitionKey"], base64.b64decode(r["Data"])))
    return records
