"""Scale-out on Redis Streams, partitioned by user (DESIGN.md "Scale-out: Redis Streams, partitioned by user").

- :mod:`.keys`     every Redis key and name;
- :mod:`.streams`  stream helpers: reading fields, trimming consumed entries;
- :mod:`.store`    ``RedisStore``: one partition's state, committed fenced by the partition's lease;
- :mod:`.ingest`   records into the partition streams (``pushlang ingest``, ``pushlang serve --redis``);
- :mod:`.worker`   partition workers: leases, batches in one MULTI/EXEC with their XACK (``pushlang worker``);
- :mod:`.dispatch` dispatch workers: the outboxes delivered, each send_id once (``pushlang dispatch``).
"""
