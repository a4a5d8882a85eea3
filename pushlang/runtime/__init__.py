"""The runtime: records in, decisions out, on an injected clock, store and dispatcher."""
