"""The live service: ingest API, wall-clock engine, delivery, stats and the browser SDK."""
