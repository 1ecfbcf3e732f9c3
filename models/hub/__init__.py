"""Getting models: the catalog, Hub downloads into huggingface_hub's cache, the license (no Qt)."""
