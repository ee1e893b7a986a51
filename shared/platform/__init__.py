"""Platform plumbing the services share: the app factory and its middleware, settings, database, bus, cache, HTTP
clients, the outbox, events, internal auth, roles, logging and request models. May use `shared.core` and
`shared.research`; they never use it."""
