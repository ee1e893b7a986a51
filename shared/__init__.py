"""The project's kernel, in three layers (docs/design.md; make lint holds them apart):
`shared.core` (A-share domain and market rules), `shared.research` (engine, strategy API, reports) — both pure —
and `shared.platform` (what the services share to run: app factory, db, bus, cache, settings, events, auth)."""
