"""The defaults of an answer, defined once: the engine, the window's settings and the command
line all start from these (Llama 4 Instruct's generation_config for the sampling)."""

MAX_TOKENS = 1024  # the longest answer, in tokens, unless a setting says otherwise
TEMPERATURE = 0.6
TOP_P = 0.9
CONTEXT_LENGTH = 32768  # the context a conversation is planned and run with, unless set otherwise
PARALLEL = 4  # answers the engine host runs at once (Settings ▸ Parallel requests, serve --parallel)
MAX_PARALLEL = 16
