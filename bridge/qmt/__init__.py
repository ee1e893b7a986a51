"""The QMT bridge: a small program on the Windows machine beside MiniQMT (xtquant) that connects out to the
platform. `protocol` is the wire format both sides use (stdlib only: the platform imports it too)."""
