"""The deterministic, seeded load: schedule (when), events (what), encoding (bytes), generator (sending)."""
