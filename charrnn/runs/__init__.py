"""Everything about a run that lasts: the run store (`store`, with `ownership`: who started a run and which
process trains it; its `schema` and Alembic migrations, the `database` URL, the `paths` it owns), `checkpoint`
bytes and files, the `recorder` that trains a run into the store, the `spool` that holds its writes while the
database is away, `copy` between stores, the app's background `runner` and its `worker` process, the
`devicequeue` that takes turns on a device, and `demo` mode's caps for a public server."""
