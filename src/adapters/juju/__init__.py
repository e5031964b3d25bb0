"""Juju adapters: the model (databags, secrets, config) read into domain values and written
back from effects. Only this package and ``app`` know ops' relation and secret objects."""
