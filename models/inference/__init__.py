"""Running Llama 4: checkpoints, images, prompts and the generation engine (no Qt)."""
