"""Signs a webhook request the way its sender does, for tests/signatures.rs.

The point is independence from datapool's own code: standard-webhooks, stripe and slack
requests are signed by those schemes' official libraries (pinned in requirements.txt);
the schemes without one (inspire, github, shopify, generic hmac) by Python's hmac,
hashlib and base64. Reads one JSON object on stdin:
  {"scheme", "secret", "body", "timestamp"?, "id"?, and for "hmac":
   "header", "algorithm", "encoding", "prefix", "signed", "timestampHeader"}
and prints the headers to send as a JSON object.
"""

import base64
import hashlib
import hmac
import json
import sys
from datetime import datetime, timezone


def digest(secret, message, algorithm="sha256"):
    return hmac.new(secret.encode(), message.encode(), getattr(hashlib, algorithm)).digest()


def inspire(r):
    mac = digest(r["secret"], f"{r['timestamp']}.{r['body']}").hex()
    return {"X-Webhook-Timestamp": str(r["timestamp"]), "X-Webhook-Signature": f"sha256={mac}"}


def standard_webhooks(r):
    from standardwebhooks.webhooks import Webhook

    at = datetime.fromtimestamp(r["timestamp"], tz=timezone.utc)
    signature = Webhook(r["secret"]).sign(r["id"], at, r["body"])
    return {
        "webhook-id": r["id"],
        "webhook-timestamp": str(r["timestamp"]),
        "webhook-signature": signature,
    }


def stripe(r):
    import stripe as library

    header = library.WebhookSignature.generate_signature_header(
        r["body"], r["secret"], timestamp=r["timestamp"]
    )
    return {"Stripe-Signature": header}


def slack(r):
    from slack_sdk.signature import SignatureVerifier

    timestamp = str(r["timestamp"])
    signature = SignatureVerifier(r["secret"]).generate_signature(
        timestamp=timestamp, body=r["body"]
    )
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


def github(r):
    return {"X-Hub-Signature-256": "sha256=" + digest(r["secret"], r["body"]).hex()}


def shopify(r):
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(digest(r["secret"], r["body"])).decode()}


def generic(r):
    headers = {}
    message = r["body"]
    if r.get("signed") == "timestamp.body":
        headers[r["timestampHeader"]] = str(r["timestamp"])
        message = f"{r['timestamp']}.{message}"
    mac = digest(r["secret"], message, r.get("algorithm", "sha256"))
    encoded = base64.b64encode(mac).decode() if r.get("encoding") == "base64" else mac.hex()
    headers[r["header"]] = r.get("prefix", "") + encoded
    return headers


SIGNERS = {
    "inspire": inspire,
    "standard-webhooks": standard_webhooks,
    "stripe": stripe,
    "slack": slack,
    "github": github,
    "shopify": shopify,
    "hmac": generic,
}

if __name__ == "__main__":
    request = json.load(sys.stdin)
    json.dump(SIGNERS[request["scheme"]](request), sys.stdout)
