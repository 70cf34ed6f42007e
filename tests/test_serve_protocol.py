"""The wire protocol alone: recorded requests in, OpenAI-shaped models and 400s naming the field out."""

import json

import pytest

from slimserve.serve.protocol import (
    DONE,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    CompletionRequest,
    Delta,
    ProtocolError,
    Usage,
    parse_request,
    sse,
)

# what the openai client sends for chat.completions.create(..., stream=True, stream_options={"include_usage": True})
RECORDED = (
    b'{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}],'
    b'"model":"tiny","max_tokens":8,"stop":["\\n"],"stream":true,"stream_options":{"include_usage":true},"seed":3}'
)


def test_recorded_chat_request():
    req = parse_request(ChatCompletionRequest, RECORDED)
    assert [m.as_template_dict() for m in req.messages] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert (req.token_limit, req.stops, req.include_usage, req.seed, req.temperature) == (8, ["\n"], True, 3, None)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}, "max_tokens"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": -0.5}, "temperature"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}, "n"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": []}, "tools"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [""]}, "stop"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": "hello"}, "messages"),
    ],
)
def test_bad_chat_input_names_the_field(body, param):
    with pytest.raises(ProtocolError) as e:
        parse_request(ChatCompletionRequest, json.dumps(body))
    assert e.value.status == 400 and e.value.param == param
    err = e.value.body()["error"]
    assert set(err) == {"message", "type", "param", "code"} and param in err["message"]


@pytest.mark.parametrize("raw", [b"{nope", b"", b"[1, 2]", b"\xff\xfe"])
def test_malformed_json_is_a_400(raw):
    with pytest.raises(ProtocolError) as e:
        parse_request(ChatCompletionRequest, raw)
    assert e.value.status == 400 and e.value.param == "body"


def test_completion_prompt_forms():
    assert parse_request(CompletionRequest, b'{"model":"m","prompt":"Once"}').prompt_text == "Once"
    assert parse_request(CompletionRequest, b'{"model":"m","prompt":[1,2,3]}').prompt_text is None
    assert parse_request(CompletionRequest, b'{"model":"m","prompt":"x"}').token_limit == 16
    with pytest.raises(ProtocolError) as e:
        parse_request(CompletionRequest, b'{"model":"m","prompt":["a","b"]}')
    assert e.value.param == "prompt"


def test_sse_framing():
    chunk = ChatCompletionChunk(id="c", created=1, model="m", choices=[ChunkChoice(delta=Delta(content="Hi"))])
    ev = sse(chunk)
    assert ev.startswith(b"data: ") and ev.endswith(b"\n\n") and b"\n" not in ev[:-2]
    assert json.loads(ev[6:])["choices"][0]["delta"]["content"] == "Hi"
    assert DONE == b"data: [DONE]\n\n"
    assert Usage.of(3, 4).total_tokens == 7


@pytest.mark.parametrize("kind", ["bpe", "gemma"])
def test_incremental_text_equals_decoding_every_token_at_once(tmp_path, kind):
    import numpy as np
    from transformers import AutoTokenizer

    from slimserve.serve.text import StopText
    from slimserve.testing import make_tiny_gemma3, make_tiny_llama

    folder = (make_tiny_gemma3 if kind == "gemma" else make_tiny_llama)(tmp_path / kind)
    tok = AutoTokenizer.from_pretrained(folder)
    rng = np.random.default_rng(0)
    text = "The sea, the sky and the river meet; a cat naps. Café crème, naïve façade!"
    ids = tok(text + " " + text[::-1], add_special_tokens=False)["input_ids"]
    if kind == "bpe":  # byte-level: any id sequence is text (the SentencePiece byte fallback is not)
        ids += rng.integers(0, len(tok), 40).tolist()
    st = StopText(tok, [])
    streamed = "".join(st.push(int(t))[0] for t in ids) + st.flush()
    assert streamed == tok.decode(ids, skip_special_tokens=True).rstrip("\ufffd")
