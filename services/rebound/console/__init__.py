"""The warehouse console: read models fed from the topics, and the cases operators work."""
