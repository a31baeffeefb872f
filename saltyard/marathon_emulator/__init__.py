"""A Marathon REST API v2 emulator: a DEVELOPMENT STAND-IN for Marathon in the local cluster.

Tasks run as real Docker containers on the configured agents' engines. See
docs/marathon-emulator.md for what it implements and what it does not.
"""
