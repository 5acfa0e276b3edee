"""The baseline of ``bench/web.py``: a one-route Flask app returning constant JSON.

Served by gunicorn with the same settings as the Kinship app in the same run, so the ratio of
the two is what Kinship's own work costs per request (routing, authentication, queries,
serialisation), with the WSGI server, HTTP parsing and Flask's request cycle common to both.
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def constant():
    return jsonify(status="ok", items=[])
