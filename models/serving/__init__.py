"""The local OpenAI-compatible server: request checking, the engine's owner thread, the app."""
