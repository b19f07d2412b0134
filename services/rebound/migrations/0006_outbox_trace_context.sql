-- The W3C trace context an event carries to Kafka as its `traceparent` header (NULL: none).
ALTER TABLE rebound.outbox ADD COLUMN traceparent text;
