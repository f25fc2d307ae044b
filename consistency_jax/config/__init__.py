"""The configuration: the schema (every key, documented), saved configs, and validation."""
