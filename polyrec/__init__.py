"""polyrec: a streaming recommender (Kafka events -> online MF -> fresh top-K in Redis)."""

__version__ = "0.1.0"
