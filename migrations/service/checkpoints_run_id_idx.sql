CREATE INDEX CONCURRENTLY IF NOT EXISTS checkpointd_checkpoints_run_id_idx ON checkpoints ((metadata ->> 'run_id'));
