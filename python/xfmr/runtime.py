"""The runtime from Python: load an artifact, run prefill and decode, generate.

A thin layer over the C++ runtime (runtime/include/xfmr/runtime): `Artifact` maps a
`model.xfmr` file, `Session` owns a KV cache and a position. Long calls release the GIL, so
sessions on different threads run in parallel; one session serializes its own calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from . import _args
from ._native import native
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Artifact", "Session", "DEVICES"]

#: The devices a session can run on today.
DEVICES = ("cpu", "cuda", "rocm", "vulkan")

_UINT64_MAX = 2**64 - 1


class Artifact:
    """A compiled model (`model.xfmr`), mapped read-only and ready to run.

    Opening checks the file (magic, version, sections), verifies the XXH3 checksums of every
    section (`verify=False` skips that for trusted files), validates the manifest, checks the
    target against this machine, loads the code and checks that the manifest agrees with it;
    weights stay in the mapping (zero copy). Raises FileNotFoundError for a missing path and
    `xfmr.Error` (with the runtime's message) for a file that is not a valid artifact for this
    machine. An artifact compiled for several targets runs on the first one this machine can
    run, or on `device` ("cpu", "cuda", "rocm", "vulkan").

        artifact = xfmr.Artifact("model.xfmr")
        artifact.vocab_size, artifact.context_length, artifact.manifest["model"]
    """

    def __init__(self, path: _args.PathLike, verify: bool = True,
                 device: Optional[str] = None, map_weights: bool = False):
        path = _args.existing(path, "artifact", kind="file")
        if not isinstance(verify, bool):
            raise TypeError(f"verify must be a bool, got {type(verify).__name__}")
        if not isinstance(map_weights, bool):
            raise TypeError(f"map_weights must be a bool, got {type(map_weights).__name__}")
        if device is not None and device not in DEVICES:
            raise InvalidArgumentError(f"device {device!r} is not supported "
                                       f"(supported: {', '.join(DEVICES)})")
        self._native = native().Artifact.open(path, verify, device or "", map_weights)
        self._manifest: Optional[Dict[str, Any]] = None
        self._cleanup = None  # set by xfmr.compile for artifacts in a temporary folder

    @property
    def path(self) -> str:
        """The file this artifact was loaded from."""
        return self._native.path

    @property
    def manifest(self) -> Dict[str, Any]:
        """The whole JSON manifest as a dict (target, model, kv_cache, weights, ...)."""
        if self._manifest is None:
            self._manifest = self._native.manifest
        return self._manifest

    @property
    def architecture(self) -> str:
        """The Hugging Face architecture name, e.g. "LlamaForCausalLM"."""
        return self._native.architecture

    @property
    def vocab_size(self) -> int:
        """Number of token ids (logit rows have this length)."""
        return self._native.vocab_size

    @property
    def hidden_size(self) -> int:
        return self._native.hidden_size

    @property
    def num_layers(self) -> int:
        return self._native.num_layers

    @property
    def context_length(self) -> int:
        """KV-cache capacity in tokens: prompt + generated tokens must fit."""
        return self._native.context_length

    @property
    def bos_token_id(self) -> Optional[int]:
        return self._native.bos_token_id

    @property
    def eos_token_id(self) -> Optional[int]:
        return self._native.eos_token_id

    @property
    def end_of_sequence_ids(self) -> List[int]:
        """The ids that end a text generation: eos_token_id and those of the checkpoint's
        generation_config.json (which may list several)."""
        return list(self._native.end_of_sequence_ids)

    @property
    def tokenizer(self):
        """The `xfmr.Tokenizer` the artifact carries (xfmr-compile copies the checkpoint's),
        or None."""
        if not hasattr(self, "_tokenizer"):
            from .tokenizer import Tokenizer  # noqa: PLC0415
            loaded = native().Tokenizer.from_artifact(self._native)
            self._tokenizer = None if loaded is None else Tokenizer._of(
                loaded, f"{self.path} (its tokenizer)", self._native)
        return self._tokenizer

    @property
    def target(self) -> Dict[str, str]:
        """{"kind", "triple", "cpu", "features", "chip", "sve_bits"} the code was compiled for
        (sve_bits: the SVE vector length of AArch64 code for one, else 0)."""
        return self._native.target

    @property
    def kv_cache_bytes(self) -> int:
        return self._native.kv_cache_bytes

    @property
    def kv_cache_bytes_per_token(self) -> int:
        return self._native.kv_cache_bytes_per_token

    @property
    def weights_bytes(self) -> int:
        return self._native.weights_bytes

    @property
    def parameter_count(self) -> int:
        return self._native.parameter_count

    @property
    def compiler(self) -> str:
        """The compiler version that wrote the artifact ("" when absent)."""
        return self._native.compiler

    @property
    def verify_seconds(self) -> float:
        """Seconds spent verifying the checksums when the artifact was opened (0 if skipped)."""
        return self._native.verify_seconds

    @property
    def threads_supported(self) -> bool:
        """Whether the code honours thread counts (it links OpenMP)."""
        return self._native.threads_supported

    def save(self, path: _args.PathLike) -> str:
        """Copies the artifact file to `path` (e.g. one compiled into a temporary folder).

        Written like every xfmr output: atomically through a unique temporary file beside
        `path`, never through or over a symbolic link; a device or FIFO is written in place.
        """
        destination = _args.path(path, "path")
        self._native.save(destination)
        return destination

    def session(self, threads: int = 0, device: Optional[str] = None) -> "Session":
        """A new `Session` on this artifact (`device`: see `Session`)."""
        return Session(self, threads=threads, device=device)

    def __repr__(self) -> str:
        return (f"<xfmr.Artifact {self.path!r}: {self.architecture}, vocab {self.vocab_size}, "
                f"context {self.context_length}, {self.parameter_count} parameters, "
                f"{self.target.get('cpu', '?')}>")


class KVBlockPool:
    """KV-cache memory in fixed-size blocks, shared by the sessions made with it (a paged
    cache; CPU only). A session takes blocks as its sequence grows and gives them back when
    reset or deleted; full blocks are published so that a new session whose prompt starts
    with the same tokens maps them instead of computing them (`Session.reuse_prefix`), and a
    session writing into a shared block copies it first.

    `blocks` is the pool's size (0: `sequences` sequences of the full context);
    `block_tokens` the positions per block (0: the smallest power of two >= 16 that keeps
    each block whole pages). Raises `xfmr.InvalidArgumentError` when the artifact's cache
    cannot be paged (`KVBlockPool.why_not_pageable(artifact)` says why) or for a bad size.

        pool = xfmr.KVBlockPool(artifact, blocks=256)
        a, b = xfmr.Session(artifact, block_pool=pool), xfmr.Session(artifact, block_pool=pool)
    """

    def __init__(self, artifact: "Artifact", blocks: int = 0, block_tokens: int = 0,
                 sequences: int = 1):
        if not isinstance(artifact, Artifact):
            raise InvalidArgumentError("a KVBlockPool needs an open xfmr.Artifact")
        blocks = _args.integer(blocks, "blocks", 0, _args.INT32_MAX)
        sequences = _args.integer(sequences, "sequences", 1, _args.INT32_MAX)
        block_tokens = _args.integer(block_tokens, "block_tokens", 0, _args.INT32_MAX)
        self._artifact = artifact
        self._native = native().KVBlockPool(artifact._native, blocks, sequences,
                                            block_tokens)

    @staticmethod
    def why_not_pageable(artifact: "Artifact", block_tokens: int = 0) -> str:
        """Why the artifact's KV cache cannot be paged ("" when it can)."""
        return native().KVBlockPool.why_not_pageable(artifact._native, block_tokens)

    @property
    def artifact(self) -> "Artifact":
        return self._artifact

    @property
    def blocks(self) -> int:
        return self._native.blocks

    @property
    def block_tokens(self) -> int:
        return self._native.block_tokens

    @property
    def block_bytes(self) -> int:
        return self._native.block_bytes

    @property
    def available(self) -> int:
        """Blocks that can be handed out now (free, or cached and reclaimable)."""
        return self._native.available

    @property
    def stats(self) -> Dict[str, int]:
        """blocks, block_tokens, block_bytes, used, cached, free, prefix_lookup_tokens,
        prefix_hit_tokens, copies (blocks copied on write)."""
        return self._native.stats()

    def __repr__(self) -> str:
        s = self.stats
        return (f"<xfmr.KVBlockPool {s['blocks']} blocks of {s['block_tokens']} positions: "
                f"{s['used']} used, {s['cached']} cached, {s['free']} free>")


class Session:
    """One conversation with a model: a KV cache and a position.

    `artifact` is an `Artifact` or the path of one. `threads` is the number of threads the
    model code uses (0: all cores). `device` ("cpu", "cuda", "rocm", "vulkan") picks which of
    the artifact's targets runs when `artifact` is a path; an open `Artifact` already runs on
    one (`artifact.target["kind"]`), and naming another is an error.

    Inputs are validated before any compute: bad token ids, a context overflow or bad sampling
    options raise `xfmr.InvalidArgumentError` (a ValueError) with the runtime's message and
    leave the session unchanged. Calls release the GIL; a session is used by one thread at a
    time (concurrent calls on one session wait for each other), while sessions on different
    threads run in parallel.

        session = xfmr.Session("model.xfmr")
        ids = session.generate([1], 32)                       # greedy
        ids = session.generate([1], 32, temperature=0.8, top_p=0.9, seed=7)
    """

    def __init__(self, artifact: Union[Artifact, _args.PathLike], threads: int = 0,
                 device: Optional[str] = None, block_pool: Optional[KVBlockPool] = None):
        if device is not None and device not in DEVICES:
            raise InvalidArgumentError(f"device {device!r} is not supported "
                                       f"(supported: {', '.join(DEVICES)})")
        if not isinstance(artifact, Artifact):
            artifact = Artifact(artifact, device=device)
        elif device is not None and artifact.target["kind"] != device:
            raise InvalidArgumentError(
                f"device {device!r}: the artifact runs on {artifact.target['kind']!r} "
                f"(open it with Artifact(path, device={device!r}))")
        device = artifact.target["kind"]
        threads = _args.integer(threads, "threads", -_args.INT32_MAX - 1, _args.INT32_MAX)
        # The runtime checks the range [0, MAX_THREADS] with its own message.
        self._artifact = artifact
        self._device = device
        if block_pool is not None and not isinstance(block_pool, KVBlockPool):
            raise InvalidArgumentError("block_pool must be an xfmr.KVBlockPool")
        if block_pool is not None and block_pool.artifact is not artifact:
            raise InvalidArgumentError(
                "the block pool was made for another Artifact object than this session's")
        self._block_pool = block_pool
        self._native = native().Session(artifact._native, threads,
                                        block_pool._native if block_pool else None)

    @property
    def artifact(self) -> Artifact:
        return self._artifact

    @property
    def device(self) -> str:
        return self._device

    @property
    def threads(self) -> int:
        """The effective thread count (0 was resolved to the number of cores)."""
        return self._native.threads

    @property
    def position(self) -> int:
        """Tokens currently in the KV cache."""
        return self._native.position

    @property
    def stats(self) -> Dict[str, Union[int, float]]:
        """Counters since the session was created, with the keys of `xfmr-run --stats`:
        prefill_tokens, prefill_seconds, prefill_tokens_per_s, decode_tokens, decode_seconds,
        decode_tokens_per_s, weights_bytes, kv_cache_bytes, kv_cache_bytes_per_token,
        parameter_count, peak_rss_bytes (of the whole process), threads."""
        return self._native.stats()

    def prefill(self, ids: Iterable[int]) -> "np.ndarray":
        """Runs `ids` (a sequence or 1-D array of ints) at the current position.

        Returns their logits as a new float32 array of shape [len(ids), vocab_size]; NumPy
        takes over the runtime's buffer (no copy). The position advances by len(ids).
        """
        ids = _args.token_ids(ids, self._artifact.vocab_size, "ids")
        return self._native.prefill(ids)

    def decode(self, token: int) -> "np.ndarray":
        """Runs one token; returns its logits, float32 of shape [vocab_size] (no copy)."""
        (token,) = _args.token_ids([token], self._artifact.vocab_size, "token")
        return self._native.decode(token)

    @staticmethod
    def step(inputs: Iterable[Tuple["Session", Iterable[int]]]) -> "np.ndarray":
        """Runs several sessions of one artifact in one call: `inputs` is a sequence of
        (session, ids) pairs, each as `prefill(ids)` would run them (one id: a decode
        step), but with the weights read once for all (the artifact's batched `step`
        entry). Returns the logits of each pair's last id, float32 [len(inputs),
        vocab_size], in input order (the LM head runs on those rows only). Raises `xfmr.InvalidArgumentError` before any compute for no inputs, a
        repeated session, sessions of different artifacts, or ids `prefill` would reject.

            rows = xfmr.Session.step([(a, [next_a]), (b, prompt_b)])   # rows[1]: b's last
        """
        inputs = list(inputs)
        if not inputs:
            raise InvalidArgumentError("a step needs at least one (session, ids) pair")
        sessions, ids = [], []
        for i, pair in enumerate(inputs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or \
                    not isinstance(pair[0], Session):
                raise InvalidArgumentError(f"step input {i} is not a (Session, ids) pair")
            session, row = pair
            sessions.append(session._native)
            ids.append(_args.token_ids(row, session._artifact.vocab_size,
                                       f"step input {i}'s ids"))
        return native().step_sessions(sessions, ids)

    def _generation(self, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed):
        return (_args.token_ids(prompt_ids, self._artifact.vocab_size, "prompt_ids"),
                _args.integer(max_new_tokens, "max_new_tokens", -_args.INT32_MAX - 1,
                              _args.INT32_MAX),
                _args.real(temperature, "temperature"),
                _args.integer(top_k, "top_k", -_args.INT32_MAX - 1, _args.INT32_MAX),
                _args.real(top_p, "top_p"),
                _args.integer(seed, "seed", 0, _UINT64_MAX))

    def generate(self, prompt_ids: Iterable[int], max_new_tokens: int,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int = 0) -> List[int]:
        """Prefills `prompt_ids` at the current position, then samples `max_new_tokens` ids.

        temperature 0 is greedy (argmax, lowest id on ties); otherwise softmax(logits / T)
        restricted to the `top_k` most likely ids (0: all) and to the smallest set whose
        probability reaches `top_p`, drawn from a generator seeded with `seed` (the same
        seed gives the same ids as `xfmr-run --seed`). Each generated id is fed back except
        the last, which is returned but not yet in the cache (`decode` it first when
        continuing). position + len(prompt_ids) + max_new_tokens must fit the context.

        Ctrl-C stops between two tokens and raises KeyboardInterrupt; the session then holds
        the tokens processed so far (`reset()` to start over).
        """
        return self._native.generate(*self._generation(prompt_ids, max_new_tokens,
                                                       temperature, top_k, top_p, seed))

    def stream(self, prompt_ids: Iterable[int], max_new_tokens: int,
               temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
               seed: int = 0) -> Iterator[int]:
        """Like `generate`, but a generator that yields the ids one at a time as they are
        computed (the same ids for the same arguments).

        Options are checked now; the prompt is checked and prefilled on the first `next()`.
        Stopping early leaves the session after the last yielded id (not yet in the cache).
        """
        tokens = self._native.stream(*self._generation(prompt_ids, max_new_tokens,
                                                       temperature, top_k, top_p, seed))
        return _yield_from(tokens)

    def stream_text(self, prompt: Union[str, bytes], tokenizer=None,
                    max_new_tokens: Optional[int] = None, stop: Sequence[str] = (),
                    ignore_eos: bool = False, temperature: float = 0.0, top_k: int = 0,
                    top_p: float = 1.0, seed: int = 0) -> Iterator[str]:
        """Encodes `prompt` with `tokenizer` (an `xfmr.Tokenizer` or its file; default: the
        artifact's; BOS as the tokenizer adds it) and yields the generated text as it arrives:
        the chunks
        `xfmr-run --prompt` prints, which hold back a character the next token may complete
        and a possible start of a stop string. Generation stops at the artifact's
        end-of-sequence ids (not shown; `ignore_eos=True` goes on), before the first
        string of `stop`, or after `max_new_tokens` (default: the end of the context).
        Sampling options as for `generate`."""
        tokenizer = self._text_tokenizer(tokenizer)
        stops = _stop_strings(stop)
        ids = tokenizer.encode(prompt, add_special_tokens=True)
        if not ids:
            raise InvalidArgumentError("the prompt is empty: it encodes to no tokens")
        if max_new_tokens is None:
            max_new_tokens = max(0, self._artifact.context_length - self.position - len(ids) + 1)
        eos = set() if ignore_eos else set(self._artifact.end_of_sequence_ids)
        text = native().TextStream(tokenizer._native, stops)
        tokens = self.stream(ids, max_new_tokens, temperature, top_k, top_p, seed)
        return _text_chunks(tokens, text, eos)

    def _text_tokenizer(self, tokenizer):
        """`tokenizer` as an xfmr.Tokenizer (default: the artifact's), checked against the
        model's vocabulary."""
        from .tokenizer import Tokenizer  # noqa: PLC0415

        if tokenizer is None:
            tokenizer = self._artifact.tokenizer
            if tokenizer is None:
                raise InvalidArgumentError(
                    f"{self._artifact.path} carries no tokenizer: pass tokenizer=, or "
                    "compile it with one")
        elif not isinstance(tokenizer, Tokenizer):
            tokenizer = Tokenizer(tokenizer)
        if tokenizer.vocab_size > self._artifact.vocab_size:
            raise InvalidArgumentError(
                f"{tokenizer.path} has {tokenizer.vocab_size} tokens, more than the model's "
                f"vocabulary of {self._artifact.vocab_size}")
        return tokenizer

    def stream_chat(self, messages: Sequence[Dict[str, Any]], tokenizer=None,
                    max_new_tokens: Optional[int] = None, stop: Sequence[str] = (),
                    ignore_eos: bool = False, temperature: float = 0.0, top_k: int = 0,
                    top_p: float = 1.0, seed: int = 0, chat_template: Optional[str] = None,
                    **template_kwargs: Any) -> Iterator[str]:
        """Yields the assistant's reply to `messages` (dicts with "role" and "content", as
        for transformers' apply_chat_template) as it arrives. The conversation is rendered
        with the tokenizer's chat template (or `chat_template`, a template source) with
        add_generation_prompt=True and `template_kwargs` (tools=, enable_thinking=, ...),
        and encoded without adding special tokens (the template writes them). When the KV
        cache holds the start of that text (the previous turns, as after an earlier chat()
        on this session), only the rest is run; otherwise the session is reset first. Stop
        rules as for `stream_text`; the template's eos_token also ends the reply (Llama-3
        ends turns with <|eot_id|>)."""
        tokenizer = self._text_tokenizer(tokenizer)
        stops = _stop_strings(stop)
        template = tokenizer._chat_template_for(chat_template)
        prompt = template.apply(messages, True, **template_kwargs)
        ids = tokenizer.encode(prompt)
        context = self._artifact.context_length
        if len(ids) >= context:
            raise InvalidArgumentError(
                f"the conversation is {len(ids)} tokens long and does not fit the context "
                f"of {context} tokens")
        cached = getattr(self, "_chat_ids", None)
        if not (cached is not None and len(cached) == self.position and
                len(cached) < len(ids) and ids[:len(cached)] == cached):
            self.reset()
            cached = []
        limit = context - len(ids) + 1
        max_new_tokens = limit if max_new_tokens is None else min(max_new_tokens, limit)
        eos = set()
        if not ignore_eos:
            eos = set(self._artifact.end_of_sequence_ids)
            eos_token = template.special_token("eos_token")
            if eos_token is not None:
                eos_ids = tokenizer.encode(eos_token)
                if len(eos_ids) == 1:
                    eos.add(eos_ids[0])
        self._chat_ids = None
        tokens = self.stream(ids[len(cached):], max_new_tokens, temperature, top_k, top_p,
                             seed)
        text = native().TextStream(tokenizer._native, stops)
        return self._chat_chunks(ids, tokens, text, eos)

    def _chat_chunks(self, ids, tokens, text, eos) -> Iterator[str]:
        sampled: List[int] = []

        def recorded():
            for token in tokens:
                sampled.append(token)
                yield token

        yield from _text_chunks(recorded(), text, eos)
        # What the cache holds now: the next turn may start from it.
        self._chat_ids = (ids + sampled)[:self.position]

    def chat(self, messages: Sequence[Dict[str, Any]], tokenizer=None,
             max_new_tokens: Optional[int] = None, stop: Sequence[str] = (),
             ignore_eos: bool = False, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, seed: int = 0, chat_template: Optional[str] = None,
             **template_kwargs: Any) -> str:
        """The whole reply `stream_chat` yields, at once: append it to `messages` as
        {"role": "assistant", "content": reply} and call again for the next turn."""
        return "".join(self.stream_chat(messages, tokenizer, max_new_tokens, stop, ignore_eos,
                                        temperature, top_k, top_p, seed, chat_template,
                                        **template_kwargs))

    def generate_text(self, prompt: Union[str, bytes], tokenizer=None,
                      max_new_tokens: Optional[int] = None, stop: Sequence[str] = (),
                      ignore_eos: bool = False, temperature: float = 0.0, top_k: int = 0,
                      top_p: float = 1.0, seed: int = 0) -> str:
        """The whole text `stream_text` yields, at once."""
        return "".join(self.stream_text(prompt, tokenizer, max_new_tokens, stop, ignore_eos,
                                        temperature, top_k, top_p, seed))

    def reset(self) -> None:
        """Clears the KV cache and returns to position 0 (stats are kept)."""
        self._native.reset()

    def truncate(self, position: int) -> None:
        """Keeps the first `position` tokens of the cache and forgets the rest (a paged cache
        gives back the blocks past them). Raises `xfmr.InvalidArgumentError` for a position
        outside [0, position] or an evicting cache that has wrapped."""
        self._native.truncate(_args.integer(position, "position", 0, 2**63 - 1))

    @property
    def block_pool(self) -> Optional[KVBlockPool]:
        return self._block_pool

    @property
    def kv_blocks(self) -> int:
        """Blocks of the pool this session maps now (0 without a pool)."""
        return self._native.kv_blocks

    def reuse_prefix(self, prompt_ids: Iterable[int]) -> int:
        """At position 0 with a block pool: maps the pool's published blocks that hold the
        longest prefix of `prompt_ids` (whole blocks, at most len(prompt_ids) - 1 tokens) and
        moves past them; returns how many tokens that is. Run the rest of the prompt next.
        Returns 0 without a pool or for an evicting cache."""
        ids = _args.token_ids(prompt_ids, self._artifact.vocab_size, "prompt_ids")
        return self._native.reuse_prefix(ids)

    def __repr__(self) -> str:
        return (f"<xfmr.Session on {self._artifact.path!r}: position {self.position} of "
                f"{self._artifact.context_length}, {self.threads} thread(s), {self._device}>")


def _stop_strings(stop) -> List[bytes]:
    if isinstance(stop, (str, bytes)):
        stop = [stop]
    stops = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in stop]
    if any(not s for s in stops):
        raise InvalidArgumentError("a stop string must not be empty")
    return stops


def _yield_from(tokens) -> Iterator[int]:
    yield from tokens


def _text_chunks(tokens, text, eos) -> Iterator[str]:
    for token in tokens:
        if token in eos:
            break
        chunk = text.push(token)
        if chunk:
            yield chunk.decode("utf-8", "replace")
        if text.stopped:
            return
    rest = text.finish()
    if rest:
        yield rest.decode("utf-8", "replace")
