"""Everything about a run that lasts: the run store (`store`, its `schema` and migrations, the `paths` it owns),
`checkpoint` files, the `recorder` that trains a run into the store, the app's background `runner` and its
`worker` process, and the `devicequeue` that takes turns on a device."""
