"""The QMT bridge: a small program on the Windows machine beside MiniQMT (xtquant) that connects out to the
platform (`python -m bridge.qmt --config bridge.toml`; bridge/qmt/README.md). `protocol` is the wire format both
sides use (stdlib only: the platform imports it too); the rest is the bridge's own and imports nothing of the
platform: `config`, `journal`, `trader` (the MiniQMT link), `normalize`, `platform` (the WebSocket links), `quotes`,
`app`."""
