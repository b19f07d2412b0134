"""Documents generated from the topic registry: the AsyncAPI document and Strimzi's KafkaTopics."""
