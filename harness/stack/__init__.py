"""The services a run needs: a Kafka-protocol broker and PostgreSQL, embedded or external."""
