"""The HTTP layer: FastAPI routes that turn protocol requests into scheduler requests and stream the answers back.

Every error is OpenAI's shape (protocol.ProtocolError); bad input is a 400 naming the field, never a 500. A request
leaves the scheduler when its client goes away (the slot is freed before the next decode step).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import Request  # module level: the routes' annotations resolve against this module

from .metrics import Metrics
from .protocol import (
    DONE,
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    Delta,
    ModelCard,
    ModelList,
    ProtocolError,
    TokenLogprob,
    Usage,
    check_api_key,
    install_error_handlers,
    install_request_counter,
    new_id,
    now,
    parse_request,
    sse,
    sse_error,
)
from .scheduler import FINISH_ERROR, FINISH_LENGTH, FINISH_SHUTDOWN, FINISH_STOP, FINISH_TIMEOUT, GenRequest, QueueFull
from .server import ServeConfig, ServedModel, ServerState, shutdown, start_loading
from .text import StopText

DISCONNECT_POLL_S = 0.5
ROUTES = ("/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions")


class Job:
    """One request in flight: the scheduler thread pushes text into an asyncio queue the handler reads.

    With logprobs, each text piece carries the (token, logprob) pairs of the tokens since the previous piece (a
    piece held back for a stop string or half a character waits, and so do its tokens); the end carries the rest.
    """

    def __init__(self, loop, m: ServedModel, stops: list[str], metrics: Metrics):
        self.loop, self.m, self.metrics = loop, m, metrics
        self.q: asyncio.Queue = asyncio.Queue()
        self.text = StopText(m.tokenizer, stops)
        self.t0 = time.monotonic()
        self.last: float | None = None
        self.gen: GenRequest | None = None
        self.pending: list[tuple[int, float]] = []
        self.offset = 0  # characters of token text already given offsets (completions' text_offset)

    def on_token(self, tok: int) -> bool:  # scheduler thread
        t = time.monotonic()
        if self.last is None:
            self.metrics.ttft.labels(self.m.name).observe(t - self.t0)
        else:
            self.metrics.itl.labels(self.m.name).observe(t - self.last)
        self.last = t
        if self.gen.params.logprobs:
            self.pending.append((tok, self.gen.logprobs[-1]))
        piece, stopped = self.text.push(tok)
        if piece:
            self.loop.call_soon_threadsafe(self.q.put_nowait, ("text", (piece, self._take())))
        return stopped

    def on_done(self, reason: str, error: BaseException | None) -> None:  # scheduler thread
        tail = self.text.flush() if reason in (FINISH_STOP, FINISH_LENGTH) else ""
        self.loop.call_soon_threadsafe(self.q.put_nowait, ("done", (tail, reason, error, self._take())))

    def _take(self) -> list[tuple[int, float]]:
        out, self.pending = self.pending, []
        return out

    def chat_logprobs(self, pairs: list[tuple[int, float]]) -> ChoiceLogprobs | None:
        """OpenAI's chat logprobs of these tokens (None when the request did not ask)."""
        if not self.gen.params.logprobs:
            return None
        dec = self.m.tokenizer.decode
        out = []
        for tok, lp in pairs:
            text = dec([tok])
            out.append(TokenLogprob(token=text, logprob=lp, bytes=list(text.encode())))
        return ChoiceLogprobs(content=out)

    def completion_logprobs(self, pairs: list[tuple[int, float]]) -> CompletionLogprobs | None:
        if not self.gen.params.logprobs:
            return None
        tokens = [self.m.tokenizer.decode([tok]) for tok, _ in pairs]
        offsets = []
        for t in tokens:
            offsets.append(self.offset)
            self.offset += len(t)
        return CompletionLogprobs(tokens=tokens, token_logprobs=[lp for _, lp in pairs], text_offset=offsets)

    def failure(self, reason: str, error: BaseException | None) -> ProtocolError:
        if reason == FINISH_TIMEOUT:
            return ProtocolError(504, f"the request timed out after {self.gen.timeout_s:g} s", code="timeout")
        if reason == FINISH_SHUTDOWN:
            return ProtocolError(503, "the server is shutting down", code="shutting_down")
        what = f"{type(error).__name__}: {error}" if error else reason
        return ProtocolError(500, f"generation failed ({what}); other requests are unaffected", code=FINISH_ERROR)

    @property
    def usage(self) -> Usage:
        return Usage.of(len(self.gen.ids), self.gen.produced)


def _check_key(cfg: ServeConfig, request) -> None:
    check_api_key(cfg.api_key, request.headers)


def _ready(state: ServerState) -> None:
    if state.load_error:
        raise ProtocolError(503, f"the server failed to load its models: {state.load_error}", code="load_failed")
    if not state.ready:
        raise ProtocolError(503, "the server is loading its models", code="loading", headers={"Retry-After": "5"})


def _model(state: ServerState, name: str) -> ServedModel:
    _ready(state)
    m = state.lookup(name)
    if m is None:
        raise ProtocolError(
            404, f"The model '{name}' does not exist here; served: {', '.join(state.ids())}",
            param="model", code="model_not_found",
        )  # fmt: skip
    return m


def _chat_ids(m: ServedModel, req: ChatCompletionRequest) -> list[int]:
    from ..generate import prompt_ids

    try:
        return prompt_ids(m.tokenizer, [msg.as_template_dict() for msg in req.messages], chat=True)
    except Exception as e:  # noqa: BLE001 (a template that rejects the conversation: the client's input)
        raise ProtocolError(400, f"'messages': the chat template rejected them ({e})", param="messages") from e


def _completion_ids(m: ServedModel, req: CompletionRequest) -> list[int]:
    text = req.prompt_text
    if text is not None:
        return list(m.tokenizer(text).input_ids)
    ids = [int(t) for t in req.prompt]
    vocab = len(m.tokenizer)
    bad = next((t for t in ids if not 0 <= t < vocab), None)
    if bad is not None:
        raise ProtocolError(400, f"'prompt': token id {bad} is outside the vocabulary [0, {vocab})", param="prompt")
    return ids


def _budget(cfg: ServeConfig, m: ServedModel, ids: list[int], limit: int | None, prompt_field: str) -> int:
    """max new tokens for this prompt; 400 naming the context limit when prompt (+ max_tokens) does not fit."""
    ctx = m.engine.context_length
    if not ids:
        raise ProtocolError(400, f"'{prompt_field}': the prompt is empty", param=prompt_field)
    if len(ids) >= ctx:
        raise ProtocolError(
            400, f"the prompt has {len(ids)} tokens, but model '{m.name}' takes at most {ctx} tokens of prompt and "
            f"completion together (its context limit); shorten the prompt",
            param=prompt_field, code="context_length_exceeded",
        )  # fmt: skip
    if limit is not None and len(ids) + limit > ctx:
        raise ProtocolError(
            400, f"the prompt ({len(ids)} tokens) plus max_tokens ({limit}) exceeds model '{m.name}''s context limit "
            f"of {ctx} tokens; ask for at most {ctx - len(ids)}",
            param="max_tokens", code="context_length_exceeded",
        )  # fmt: skip
    return limit if limit is not None else min(cfg.max_tokens, ctx - len(ids))


def _submit(state: ServerState, m: ServedModel, req, ids: list[int], stop_ids, prompt_field: str) -> Job:
    from .engines import SamplingParams

    max_new = _budget(state.cfg, m, ids, req.token_limit, prompt_field)
    job = Job(asyncio.get_running_loop(), m, req.stops, state.metrics)
    params = SamplingParams(temperature=req.temperature or 0.0, top_p=req.top_p, seed=req.seed,
                            logprobs=req.logprobs is not None and req.logprobs is not False)  # chat: true; completions: 0  # fmt: skip
    job.gen = GenRequest(ids=ids, max_new=max_new, params=params, stop_ids=frozenset(stop_ids),
                         on_token=job.on_token, on_done=job.on_done, timeout_s=state.cfg.request_timeout_s)  # fmt: skip
    try:
        m.scheduler.submit(job.gen)
    except QueueFull as e:
        state.metrics.rejected.labels(m.name).inc()
        raise ProtocolError(
            429, f"model '{m.name}' is at capacity ({e}); retry after {e.retry_after_s} s",
            code="queue_full", headers={"Retry-After": str(e.retry_after_s)},
        ) from None  # fmt: skip
    state.metrics.prompt_tokens.labels(m.name).inc(len(ids))
    return job


async def _collect(request, job: Job) -> tuple[str, str, list[tuple[int, float]]]:
    """Wait for the whole answer (text, finish_reason, (token, logprob) pairs if asked); cancels the request if the
    client disconnects."""
    parts: list[str] = []
    pairs: list[tuple[int, float]] = []
    while True:
        try:
            kind, val = await asyncio.wait_for(job.q.get(), timeout=DISCONNECT_POLL_S)
        except TimeoutError:
            if await request.is_disconnected():
                job.m.scheduler.cancel(job.gen)
                raise ProtocolError(499, "client closed the request") from None
            continue
        if kind == "text":
            parts.append(val[0])
            pairs += val[1]
            continue
        tail, reason, error, rest = val
        if reason not in (FINISH_STOP, FINISH_LENGTH):
            raise job.failure(reason, error)
        return "".join(parts) + tail, reason, pairs + rest


async def _events(job: Job, chunk, final, include_usage: bool):
    """SSE body: chunk(text, pairs) per piece, final(finish_reason), the usage event if asked, then [DONE].

    A client that goes away closes this generator: the finally block frees its slot.
    """
    finished = False
    try:
        while True:
            kind, val = await job.q.get()
            if kind == "text":
                yield sse(chunk(*val))
                continue
            tail, reason, error, rest = val
            finished = True
            if reason not in (FINISH_STOP, FINISH_LENGTH):
                yield sse_error(job.failure(reason, error))
                yield DONE
                return
            if tail or rest:
                yield sse(chunk(tail, rest))
            yield sse(final(reason))
            if include_usage:
                yield sse(final(None, usage=job.usage))
            yield DONE
            return
    finally:
        if not finished:
            job.m.scheduler.cancel(job.gen)


def _stream(events):
    from fastapi.responses import StreamingResponse

    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _count(state: ServerState, job: Job) -> None:
    state.metrics.generation_tokens.labels(job.m.name).inc(job.gen.produced)


async def chat_completions(state: ServerState, request):
    _check_key(state.cfg, request)
    req = parse_request(ChatCompletionRequest, await request.body())
    m = _model(state, req.model)
    job = _submit(state, m, req, _chat_ids(m, req), m.chat_stop_ids, "messages")
    if req.stream:
        cid, created = new_id("chatcmpl"), now()

        def chunk(text: str | None, pairs=(), role=None) -> ChatCompletionChunk:
            lps = job.chat_logprobs(list(pairs)) if role is None else None
            return ChatCompletionChunk(id=cid, created=created, model=req.model,
                                       choices=[ChunkChoice(delta=Delta(role=role, content=text), logprobs=lps)])  # fmt: skip

        def final(reason, usage=None) -> ChatCompletionChunk:
            _count(state, job)
            if usage is not None:
                return ChatCompletionChunk(id=cid, created=created, model=req.model, choices=[], usage=usage)
            return ChatCompletionChunk(id=cid, created=created, model=req.model,
                                       choices=[ChunkChoice(delta=Delta(), finish_reason=reason)])  # fmt: skip

        async def body():
            yield sse(chunk("", role="assistant"))
            async for ev in _events(job, chunk, final, req.include_usage):
                yield ev

        return _stream(body())
    text, reason, pairs = await _collect(request, job)
    _count(state, job)
    choice = ChatChoice(message=AssistantMessage(content=text), finish_reason=reason, logprobs=job.chat_logprobs(pairs))
    return ChatCompletion(model=req.model, choices=[choice], usage=job.usage).model_dump()


async def completions(state: ServerState, request):
    _check_key(state.cfg, request)
    req = parse_request(CompletionRequest, await request.body())
    m = _model(state, req.model)
    job = _submit(state, m, req, _completion_ids(m, req), (), "prompt")
    if req.stream:
        cid, created = new_id("cmpl"), now()

        def chunk(text: str, pairs=()) -> Completion:
            lps = job.completion_logprobs(list(pairs))
            return Completion(id=cid, created=created, model=req.model,
                              choices=[CompletionChoice(text=text, logprobs=lps)])  # fmt: skip

        def final(reason, usage=None) -> Completion:
            _count(state, job)
            choices = [] if usage is not None else [CompletionChoice(text="", finish_reason=reason)]
            return Completion(id=cid, created=created, model=req.model, choices=choices, usage=usage)

        return _stream(_events(job, chunk, final, req.include_usage))
    text, reason, pairs = await _collect(request, job)
    _count(state, job)
    choice = CompletionChoice(text=text, finish_reason=reason, logprobs=job.completion_logprobs(pairs))
    return Completion(model=req.model, choices=[choice], usage=job.usage).model_dump()


def models_list(state: ServerState, request) -> dict:
    _check_key(state.cfg, request)
    _ready(state)
    cards = [
        ModelCard(
            id=m.name,
            tier=m.tier,
            target=m.target,
            context_length=m.engine.context_length,
            price_per_1m_output_tokens_usd=m.price_out,
        )  # fmt: skip
        for m in sorted(state.models.values(), key=lambda m: m.name)
    ]
    return ModelList(data=cards).model_dump()


def create_app(cfg: ServeConfig, *, endpoint: str | None = None, preloaded: list[ServedModel] | None = None):
    """(FastAPI app, its state). preloaded: models already running (tests); otherwise they load at startup."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    state = ServerState(cfg=cfg, metrics=Metrics(), endpoint=endpoint)
    if preloaded is not None:
        state.models = {m.name: m for m in preloaded}
        state.ready = True

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if not state.ready:
            start_loading(state)
        yield
        await asyncio.to_thread(shutdown, state)

    app = FastAPI(title="slimserve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)

    install_request_counter(app, state.metrics.requests, ROUTES)

    @app.get("/health")
    async def health():
        if state.load_error:
            return JSONResponse({"status": "error", "error": state.load_error}, status_code=503)
        if not state.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ok", "models": state.ids()}

    @app.get("/metrics")
    async def metrics():
        body, ctype = state.metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/v1/models")
    async def models(request: Request):
        return models_list(state, request)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await chat_completions(state, request)

    @app.post("/v1/completions")
    async def complete(request: Request):
        return await completions(state, request)

    app.state.slimserve = state
    return app, state
