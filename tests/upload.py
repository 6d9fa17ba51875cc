"""Uploads a file to datapool the way an operator's script does: Python's requests,
given an open file, streams it in 8 KiB writes. tests/bulk.rs imports through it,
since the pieces a body arrives in change what the server reads at once.

usage: upload.py URL INGEST_KEY CONTENT_TYPE PATH
Prints the answer's status on the first line and its body after it."""
import sys

import requests
import urllib3

urllib3.disable_warnings()
url, key, content_type, path = sys.argv[1:5]
with open(path, "rb") as body:
    answer = requests.post(
        url,
        data=body,
        headers={"Authorization": "Bearer " + key, "Content-Type": content_type},
        # The test server's generated certificate, on 127.0.0.1.
        verify=False,
        timeout=300,
    )
print(answer.status_code)
print(answer.text)
