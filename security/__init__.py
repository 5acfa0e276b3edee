"""Cross-cutting abuse defences: HTTP headers and proxies (``http``), text hygiene (``text``)."""
