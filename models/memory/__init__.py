"""What a model needs in memory and what this machine can give it (no Qt)."""
