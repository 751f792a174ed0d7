"""Text <-> token ids with the runtime's C++ tokenizers (runtime/include/xfmr/runtime/Tokenizer.h).

    tokenizer = xfmr.Tokenizer("tokenizer.json")    # or a SentencePiece tokenizer.model
    tokenizer = xfmr.Artifact("model.xfmr").tokenizer   # the one an artifact carries
    ids = tokenizer.encode("Hello world")           # [15496, 995] with GPT-2's
    text = tokenizer.decode(ids)                    # "Hello world"
    prompt = tokenizer.apply_chat_template(         # the checkpoint's chat template
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True)

    template = xfmr.ChatTemplate("{{ bos_token }}{% for m in messages %}...{% endfor %}")
    text = template.render(messages=[...], bos_token="<s>")

Supported: Hugging Face tokenizer.json files with a byte-level BPE model (GPT-2, Llama-3,
DeepSeek-V3, Qwen2/3) or a SentencePiece-style one (Llama-2, Mistral, Gemma: Metaspace, byte
fallback) and SentencePiece models; anything else raises `xfmr.Error` naming the
component (docs/cli.md, xfmr-tokenize). Chat templates (the `chat_template` of
tokenizer_config.json) are rendered in C++ as Hugging Face's apply_chat_template renders them
with jinja2; templates outside the supported subset raise `xfmr.Error` naming what is missing.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from ._native import native
from .errors import InvalidArgumentError

__all__ = ["ChatTemplate", "Tokenizer"]

Messages = Sequence[Dict[str, Any]]


class Tokenizer:
    """A tokenizer file loaded by the C++ runtime; thread-safe, releases the GIL."""

    def __init__(self, path: Union[str, os.PathLike]):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such tokenizer file")
        self._native = native().Tokenizer.load(path)
        self.path = path

    @classmethod
    def _of(cls, loaded, path: str, artifact=None) -> "Tokenizer":
        """Wraps a native tokenizer (one `artifact`, a native artifact, carries)."""
        tokenizer = cls.__new__(cls)
        tokenizer._native = loaded
        tokenizer.path = path
        tokenizer._artifact = artifact
        return tokenizer

    @property
    def chat_template(self) -> Optional["ChatTemplate"]:
        """The chat template of the tokenizer_config.json beside the tokenizer file (or in
        the artifact that carries it), or None when there is none."""
        if not hasattr(self, "_chat_template"):
            self._chat_template = self._template_with(None)
        return self._chat_template

    def _chat_template_for(self, source: Optional[str]) -> "ChatTemplate":
        """`source` (a template given in a call) with the config's special tokens, else the
        config's template; InvalidArgumentError when there is neither."""
        if source is not None:
            return self._template_with(str(source))
        if self.chat_template is None:
            raise InvalidArgumentError(
                f"{self.path}: no chat template (no chat_template in its "
                "tokenizer_config.json): pass chat_template=")
        return self.chat_template

    def _template_with(self, source: Optional[str]) -> Optional["ChatTemplate"]:
        """The config's template, or `source` with the config's special tokens."""
        artifact = getattr(self, "_artifact", None)
        if artifact is not None:
            loaded = native().ChatTemplate.from_artifact(artifact, source)
        else:
            loaded = native().ChatTemplate.for_tokenizer_file(self.path, source)
        return None if loaded is None else ChatTemplate._of(loaded)

    def apply_chat_template(self, messages: Messages, add_generation_prompt: bool = False,
                            tokenize: bool = True, chat_template: Optional[str] = None,
                            **kwargs: Any) -> Union[str, List[int]]:
        """As transformers' `apply_chat_template`: renders `messages` (dicts with "role",
        "content", ...) with the checkpoint's chat template (or `chat_template`, a template
        source, which also sees the config's special tokens), the special tokens of
        tokenizer_config.json, `tools`/`documents` and any
        other `kwargs` as template variables; returns the ids of the text (encoded without
        adding special tokens, since the template writes them) or, with tokenize=False, the
        text."""
        text = self._chat_template_for(chat_template).apply(messages, add_generation_prompt,
                                                            **kwargs)
        return self.encode(text) if tokenize else text

    def encode(self, text: Union[str, bytes], add_special_tokens: bool = False) -> List[int]:
        """The ids of `text` (str, encoded as UTF-8, or bytes). `add_special_tokens` adds what
        the tokenizer adds around one sequence (BOS for Llama-3 and SentencePiece models)."""
        if isinstance(text, str):
            text = text.encode("utf-8", "surrogateescape")
        elif not isinstance(text, (bytes, bytearray)):
            raise TypeError(f"text must be str or bytes, not {type(text).__name__}")
        return self._native.encode(bytes(text), bool(add_special_tokens))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The exact bytes of `ids`, special tokens included."""
        return self._native.decode([int(i) for i in ids])

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; bytes that are not valid UTF-8 (a character split between
        tokens) become U+FFFD, as Hugging Face's decode does."""
        return self.decode_bytes(ids).decode("utf-8", "replace")

    @property
    def vocab_size(self) -> int:
        """One past the largest id."""
        return self._native.vocab_size

    @property
    def kind(self) -> str:
        """"tokenizer.json (BPE)" or "SentencePiece"."""
        return self._native.kind

    def __repr__(self) -> str:
        return f"xfmr.Tokenizer({self.path!r}, {self.kind}, vocab_size={self.vocab_size})"


class ChatTemplate:
    """A Jinja chat template rendered by the C++ runtime (runtime/include/xfmr/runtime/
    ChatTemplate.h): the output equals jinja2's as transformers configures it (trim_blocks,
    lstrip_blocks, loop controls, `tojson`, `raise_exception`, `strftime_now`)."""

    def __init__(self, source: str):
        if not isinstance(source, str):
            raise TypeError(f"source must be str, not {type(source).__name__}")
        self._native = native().ChatTemplate(source, "chat template")

    @classmethod
    def _of(cls, loaded) -> "ChatTemplate":
        template = cls.__new__(cls)
        template._native = loaded
        return template

    def special_token(self, name: str) -> Optional[str]:
        """The special token `name` ("bos_token", "eos_token", ...) that the
        tokenizer_config.json sets, or None."""
        return self._native.special_token(name)

    def render(self, **variables: Any) -> str:
        """The template rendered with exactly `variables` (JSON-serialisable values)."""
        return self._native.render(_to_json(variables)).decode("utf-8", "surrogateescape")

    def apply(self, messages: Messages, add_generation_prompt: bool = False,
              **variables: Any) -> str:
        """Renders `messages` as apply_chat_template does: `tools` and `documents` are None
        unless given, the special tokens of the tokenizer_config.json it came from are set,
        `variables` win over both."""
        return self._native.apply(_to_json(list(messages)), bool(add_generation_prompt),
                                  _to_json(variables)).decode("utf-8", "surrogateescape")


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"chat template values must be JSON-serialisable: {error}") from None
