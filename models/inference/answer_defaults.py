"""The defaults of an answer, by the names the engine, the window's settings and the command line
use. The generation settings' own defaults are the table's (``models.inference.settings_spec``)."""

from models.inference.settings_spec import setting

MAX_TOKENS: int = setting("max_tokens").default  # the longest answer, in tokens
TEMPERATURE: float = setting("temperature").default  # Llama 4 Instruct's generation_config
TOP_P: float = setting("top_p").default
CONTEXT_LENGTH: int = setting("context_length").window_default  # a conversation's, unless set
PARALLEL = 4  # answers the engine host runs at once (Settings ▸ Parallel requests, serve --parallel)
MAX_PARALLEL = 16
