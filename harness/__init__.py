"""Stream-processing benchmark harness: Flink, Spark Structured Streaming and batch on one Kafka load."""

__version__ = "0.1.0"
