"""An example Flask app configured by secret-fetch.

secret-fetch writes the decrypted secrets.cfg to a tmpfs file (--out) and also puts its entries into
the environment (--env), then execs gunicorn. This app reads both ways: Flask's own
app.config.from_pyfile on the tmpfs file, and os.environ for a value taken from the same secret.
It never returns a secret: only short SHA-256 prefixes, enough to tell which version is served.
"""

import hashlib
import os

from flask import Flask, jsonify

SECRETS_FILE = os.environ.get("SECRETS_FILE", "/run/secrets/app.cfg")

app = Flask(__name__)
app.config.from_pyfile(SECRETS_FILE)
# From the environment when secret-fetch injected it (--env: secrets win over image defaults); from
# the file otherwise (the Kubernetes init-container pattern, where only the file is shared).
DATABASE_URL_FROM = "environment" if "DATABASE_URL" in os.environ else "file"
DATABASE_URL = os.environ.get("DATABASE_URL") or app.config["DATABASE_URL"]


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


@app.get("/")
def index():
    return jsonify(
        secret_key_sha256=fingerprint(app.config["SECRET_KEY"]),
        database_url_sha256=fingerprint(DATABASE_URL),
        database_url_from=DATABASE_URL_FROM,
        greeting=os.environ.get("GREETING", ""),
        uid=os.getuid(),
    )


@app.get("/healthz")
def healthz():
    return "ok\n"
