"""The OpenAI wire protocol: request/response models, SSE chunks, and errors in OpenAI's shape.

Self-contained (pydantic only; FastAPI imported inside ``install_error_handlers``), so any OpenAI-compatible front
end can reuse it: ``slimserve serve`` and the gateway. Requests forbid unknown fields, so a misspelt or unsupported
parameter is a 400 that names it, never silently ignored. Every error body is
``{"error": {"message", "type", "param", "code"}}``.

>>> req = parse_request(ChatCompletionRequest, b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}]}')
>>> req.messages[0].text
'Hi'
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOP = 4  # OpenAI's limit on stop sequences
DONE = b"data: [DONE]\n\n"  # the last SSE event of every stream


# --- errors ---------------------------------------------------------------------------------------------------------

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ProtocolError(Exception):
    """An HTTP error with OpenAI's body; raise it anywhere below the endpoint and the handler renders it.

    headers: extra response headers (e.g. Retry-After on a 429).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return ErrorResponse(error=ErrorDetail(message=self.message, type=self.type, param=self.param,
                                               code=self.code)).model_dump()  # fmt: skip


def field_path(loc: tuple) -> str:
    """pydantic's error location as OpenAI writes a param: ('messages', 0, 'role') -> 'messages[0].role'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("body",) and not out:
            continue
        elif not _is_type_tag(part):
            out += f".{part}" if out else str(part)
    return out or "body"


def _is_type_tag(part: Any) -> bool:
    # pydantic adds the union member it tried ('str', 'list[...]', 'function-after[...]') to the location
    return isinstance(part, str) and (part in ("str", "int", "float", "bool") or "[" in part)


def validation_error(exc: ValidationError | Any) -> ProtocolError:
    """A 400 naming the first bad field of a pydantic (or FastAPI RequestValidationError) error."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": str(exc)}
    param = field_path(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = "unknown or unsupported parameter"
    elif first.get("type") == "missing":
        msg = "is required"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ProtocolError(400, f"'{param}': {msg}{more}", param=param, code="invalid_value")


def parse_request(model: type[BaseModel], raw: bytes | str) -> Any:
    """Validate a raw JSON body into `model`; ProtocolError 400 naming the field (or the JSON error) if it is bad."""
    try:
        data = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(400, f"the request body is not valid JSON ({e})", param="body", code="invalid_json") from e
    if not isinstance(data, dict):
        raise ProtocolError(400, "the request body must be a JSON object", param="body", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_error(e) from e


def check_api_key(expected: str | None, headers) -> None:
    """401 unless the request sends `Authorization: Bearer <expected>` (no key configured: anything goes)."""
    if expected is None:
        return
    got = headers.get("authorization", "")
    token = got[7:].strip() if got.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ProtocolError(
            401, "Incorrect API key provided (send it as 'Authorization: Bearer KEY')", code="invalid_api_key"
        )


def install_request_counter(app, counter, routes) -> None:
    """Count every HTTP answer in `counter` (a Prometheus Counter labelled path, status); paths outside `routes` count
    as "other", so a scan of random URLs cannot grow the label set."""

    @app.middleware("http")
    async def count(request, call_next):
        response = await call_next(request)
        path = request.url.path if request.url.path in routes else "other"
        counter.labels(path, str(response.status_code)).inc()
        return response


def install_error_handlers(app) -> None:
    """Render ProtocolError, FastAPI's validation errors and unexpected exceptions in OpenAI's shape (no 422s)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def render(e: ProtocolError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(ProtocolError)
    async def _protocol(_request, e: ProtocolError):
        return render(e)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request, e):
        return render(validation_error(e))

    @app.exception_handler(HTTPException)
    async def _http(_request, e):
        return render(ProtocolError(e.status_code, str(e.detail), headers=dict(e.headers or {})))

    @app.exception_handler(Exception)
    async def _unexpected(_request, e):
        return render(ProtocolError(500, f"internal error: {type(e).__name__}: {e}"))


# --- requests -------------------------------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""

    def as_template_dict(self) -> dict:
        """The message as a chat template takes it ({'role', 'content'} with plain text)."""
        return {"role": self.role, "content": self.text}


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    """Fields shared by both completion endpoints. temperature None: the server's default (greedy)."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # metadata only
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v: int) -> int:
        if v != 1:
            raise ValueError("only n=1 is supported")
        return v

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, v: float) -> float:
        if v != 0:
            raise ValueError("penalties are not supported (only 0)")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(s == "" for s in stops):
            raise ValueError("a stop sequence must not be empty")
        return v

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)  # the newer name of max_tokens
    logprobs: bool = False  # each answer token's log-prob in choices[0].logprobs.content
    top_logprobs: int | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _no_top(cls, v: int | None) -> int | None:
        if v:
            raise ValueError("top_logprobs is not supported (only 0): logprobs gives the picked tokens' only")
        return v

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for /v1/completions
    echo: Literal[False] = False
    logprobs: int | None = None  # 0: each answer token's log-prob (no alternatives)
    suffix: None = None

    @field_validator("logprobs")
    @classmethod
    def _zero_only(cls, v: int | None) -> int | None:
        if v not in (None, 0):
            raise ValueError("only logprobs=0 is supported (the picked tokens' log-probs, no alternatives)")
        return v

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list) and v and isinstance(v[0], str) and len(v) != 1:
            raise ValueError("only one prompt per request is supported")
        if isinstance(v, list) and not v:
            raise ValueError("the prompt must not be empty")
        return v

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens

    @property
    def prompt_text(self) -> str | None:
        """The prompt as text, or None when it was given as token ids."""
        if isinstance(self.prompt, str):
            return self.prompt
        return self.prompt[0] if isinstance(self.prompt[0], str) else None


# --- responses ------------------------------------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt: int, completion: int) -> Usage:
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class TokenLogprob(BaseModel):
    """One answer token's log-prob, as OpenAI's chat API writes it (no alternatives: top_logprobs stays empty)."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[dict] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class CompletionLogprobs(BaseModel):
    """/v1/completions' logprobs shape; text_offset counts characters from the start of the answer."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict] | None = None
    text_offset: list[int]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    """One SSE event of a streamed chat completion; the include_usage event has no choices and the usage."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    """A /v1/completions response, or (object "text_completion" too, as OpenAI sends) one streamed chunk."""

    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    """One served model; slimserve adds what a router needs to pick it (extra fields are allowed by OpenAI SDKs)."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str = "slimserve"
    tier: str | None = None
    target: str | None = None
    context_length: int | None = None
    price_per_1m_output_tokens_usd: float | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def sse(event: BaseModel | dict) -> bytes:
    """One server-sent event: 'data: <json>' and a blank line (nulls kept, as OpenAI's stream sends them)."""
    payload = event.model_dump() if isinstance(event, BaseModel) else event
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def sse_error(e: ProtocolError) -> bytes:
    """An error after the stream has started (the status line is already sent): OpenAI's body as one event."""
    return sse(e.body())
