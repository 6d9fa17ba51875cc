"""Parses an OpenMetrics exposition with the reference parser, for tests/metrics.rs.

Reads the text of /metrics on stdin; the parser rejects anything the format forbids
(a missing `# EOF`, a bad name or label, a counter without `_total`, a histogram whose
buckets do not add up). Prints the samples as a JSON list of
  {"family", "type", "name", "labels", "value"}
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    samples = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        for sample in family.samples:
            samples.append({
                "family": family.name,
                "type": family.type,
                "name": sample.name,
                "labels": sample.labels,
                "value": sample.value,
            })
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    main()
