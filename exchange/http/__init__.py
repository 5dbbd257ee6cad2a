"""The HTTP shell: problem+json errors, the node's routes, and (later) the client."""
