"""The fake engine's tokenizer and prompt layout (``tests.support.fake_engine``).

``FakeTokenizer`` cuts text into reversible pieces (a word with the spaces before it) whose ids
are shared by every fake in the process; ``FakePromptEncoder`` lays a conversation out as Llama
4's chat template does: ``<|begin_of_text|>``, a header per turn, ``<|eot|>`` after each,
``image_tokens`` ``<|patch|>`` positions per image keyed ``(id, image hash, n)``, answers fed
back by their token ids, and an open last turn for a continued answer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from models.inference.prompt import ChatMessage, EncodedPrompt

SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|header_start|>",
    "<|header_end|>",
    "<|eot|>",
    "<|image_start|>",
    "<|image_end|>",
    "<|patch|>",
)
_PIECE = re.compile(r"\s*\S+|\s+")


class FakeTokenizer:
    """Reversible text pieces (a word with the spaces before it) with ids shared by every fake
    engine in the process, so stored answer ids stay valid when another fake loads."""

    _lock = threading.Lock()
    _ids: dict[str, int] = {token: n for n, token in enumerate(SPECIAL_TOKENS, start=1)}
    _pieces: dict[int, str] = {n: token for token, n in _ids.items()}

    def __init__(self):
        self.eos_token_ids = {self.token_id("<|eot|>")}

    def token_id(self, piece: str) -> int:
        with self._lock:
            found = self._ids.get(piece)
            if found is None:
                found = self._ids[piece] = len(self._ids) + 1
                self._pieces[found] = piece
            return found

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = [self.token_id(piece) for piece in _PIECE.findall(text)]
        return [self.token_id("<|begin_of_text|>"), *ids] if add_special_tokens else ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        pieces = (self._pieces.get(int(i), "\ufffd") for i in ids)
        if skip_special_tokens:
            pieces = (p for p in pieces if p not in SPECIAL_TOKENS)
        return "".join(pieces)

    def known(self, token_id: int) -> bool:
        return token_id in self._pieces and self._pieces[token_id] not in SPECIAL_TOKENS


class FakePromptEncoder:
    """Lays out a conversation as Llama 4's template does, with pieces for text."""

    def __init__(self, tokenizer: FakeTokenizer, image_tokens: int):
        self.tokenizer = tokenizer
        self.image_tokens = image_tokens

    def _special(self, token: str) -> int:
        return self.tokenizer.token_id(token)

    def _header(self, role: str) -> list[int]:
        return [
            self._special("<|header_start|>"),
            *self.tokenizer.encode(role),
            self._special("<|header_end|>"),
        ]

    def encode(
        self,
        messages: list[ChatMessage],
        add_generation_prompt: bool = True,
        continue_final: bool = False,
        valid_id: Callable[[int], bool] | None = None,
    ) -> EncodedPrompt:
        if continue_final:
            if not messages or messages[-1].role != "assistant":
                raise ValueError("only an assistant answer can be continued")
            head = self.encode(messages[:-1], add_generation_prompt=True, valid_id=valid_id)
            tail = self._answer_ids(messages[-1], valid_id)
            return EncodedPrompt(ids=head.ids + tail, keys=head.keys + tail, images=[])
        ids = [self._special("<|begin_of_text|>")]
        keys: list = list(ids)
        for message in messages:
            header = self._header(message.role) + self.tokenizer.encode("\n\n")
            ids += header
            keys += header
            for image in message.images if message.role == "user" else ():
                patch = self._special("<|patch|>")
                ids += [
                    self._special("<|image_start|>"),
                    *[patch] * self.image_tokens,
                    self._special("<|image_end|>"),
                ]
                keys += [
                    self._special("<|image_start|>"),
                    *[(patch, image.sha256, n) for n in range(self.image_tokens)],
                    self._special("<|image_end|>"),
                ]
            if message.role == "assistant":
                body = self._answer_ids(message, valid_id)
            else:
                body = self.tokenizer.encode(
                    message.text.strip() if message.role == "system" else message.text
                )
            body.append(self._special("<|eot|>"))
            ids += body
            keys += body
        if add_generation_prompt:
            header = self._header("assistant") + self.tokenizer.encode("\n\n")
            ids += header
            keys += header
        return EncodedPrompt(ids=ids, keys=keys, images=[])

    def _answer_ids(self, message: ChatMessage, valid_id) -> list[int]:
        ids = message.token_ids
        if ids is not None and (valid_id is None or all(valid_id(t) for t in ids)):
            return list(ids)
        return self.tokenizer.encode(message.text)
