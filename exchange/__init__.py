"""exchange: a federated, signed linked-data exchange of cases, events and best practices
between government platforms.

The pure core (canonical, keys, proof, schema, ...) does no I/O; the shell (cli, and later
the HTTP server, client and stores) calls it.
"""

__version__ = "0.1.0"
