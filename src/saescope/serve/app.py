"""The Starlette app: routes, request checks, and the handlers that turn every failure into a
short 4xx/5xx message (JSON under ``/api/``, a page elsewhere), never a traceback."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from saescope.errors import SaescopeError
from saescope.models import LanguageModel
from saescope.serve import fragments, pages, params, work
from saescope.serve.assets import CSS, JS
from saescope.serve.params import BadRequest
from saescope.serve.state import Limits, Served
from saescope.serve.worker import ModelWorker, QueueFull
from saescope.steer.generate import GenerationConfig
from saescope.steer.interventions import (
    Edit,
    FeatureIntervention,
    Intervention,
    UnitIntervention,
    VectorIntervention,
)
from saescope.steer.ops import OPS
from saescope.steer.positions import ALL, GENERATED

log = logging.getLogger(__name__)

DEFAULT_LIMITS = Limits()


class Server:
    """What the routes share: the served indexes, the one model and its worker, the limits."""

    def __init__(
        self, served: Sequence[Served], model: LanguageModel | None, limits: Limits
    ) -> None:
        self.served = {s.name: s for s in served}
        if len(self.served) != len(served):
            raise SaescopeError("two indexes have the same name; name them with --index NAME=PATH")
        self.model, self.limits = model, limits
        self.worker = ModelWorker(limits.queued_jobs)

    def get(self, request: Request) -> Served:
        name = request.path_params["name"]
        if name not in self.served:
            raise HTTPException(404, f"no index named {name!r}; served: {', '.join(self.served)}")
        return self.served[name]

    def feature(self, served: Served, request: Request) -> int:
        f = int(request.path_params["f"])
        if f >= served.index.n_features:
            raise HTTPException(
                404, f"feature {f} does not exist: {served.name} has features "
                f"0..{served.index.n_features - 1}",
            )  # fmt: skip
        return f

    def modelled(self, served: Served) -> tuple[LanguageModel, Any]:
        """The model and the SAE for model work on ``served``, or a 409 saying why not."""
        if self.model is None or served.source is None:
            why = "the server runs without a model" if self.model is None else served.why_no_source
            raise BadRequest(f"this needs the model and the SAE: {why}", 409)
        return self.model, served.source

    async def body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > self.limits.body_bytes:
            raise BadRequest(
                f"the request body is {len(raw):,} bytes; the limit is {self.limits.body_bytes:,}",
                413,
            )
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise BadRequest("the request body must be JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the request body must be a JSON object")
        return data

    async def job(self, request: Request, fn: Any, *args: Any) -> Any:
        ticket = request.headers.get("x-ticket", "")[:32]
        return await self.worker.run(fn, *args, ticket=ticket)


def create_app(
    served: Sequence[Served], model: LanguageModel | None = None, limits: Limits = DEFAULT_LIMITS
) -> Starlette:
    """The web app over ``served`` indexes; model work runs on ``model`` through one queue."""
    s = Server(served, model, limits)

    async def home(request: Request) -> Response:
        return HTMLResponse(pages.home(list(s.served.values())))

    async def overview(request: Request) -> Response:
        served = s.get(request)
        qp = request.query_params
        sort = qp.get("sort", "density")
        if sort not in pages.SORTS:
            raise BadRequest(f"sort must be one of {', '.join(pages.SORTS)}, got {sort!r}")
        order = qp.get("order", "desc")
        if order not in ("asc", "desc"):
            raise BadRequest(f"order must be asc or desc, got {order!r}")
        q = pages.TableQuery(
            sort=sort,
            descending=order == "desc",
            contains=qp.get("q", "")[:100],
            min_density=params.number(dict(qp), "dmin", 0.0, 0.0, 1.0),
            max_density=params.number(dict(qp), "dmax", 1.0, 0.0, 1.0),
            page=params.integer(dict(qp), "page", 0, 0, 10**6),
        )
        return HTMLResponse(pages.overview(served, q))

    async def feature(request: Request) -> Response:
        served = s.get(request)
        record = served.index.feature(s.feature(served, request))
        return HTMLResponse(pages.feature_page(served, record))

    async def feature_json(request: Request) -> Response:
        served = s.get(request)
        record = served.index.feature(s.feature(served, request))
        return JSONResponse(pages.record_json(served, record))

    def hits(served: Served, request: Request) -> tuple[str, list]:
        query = request.query_params.get("q", "")
        if len(query) > 100:
            raise BadRequest(f"the search query is {len(query)} characters; the limit is 100")
        limit = params.integer(dict(request.query_params), "limit", 20, 1, 200)
        return query, served.index.search(query, limit) if query.strip() else []

    async def search(request: Request) -> Response:
        served = s.get(request)
        query, found = hits(served, request)
        return HTMLResponse(pages.search_page(served, query, found))

    async def search_api(request: Request) -> Response:
        served = s.get(request)
        query, found = hits(served, request)
        if not query.strip():
            raise BadRequest("give a search word: /api/i/NAME/search?q=WORD")
        return JSONResponse({"query": query, "hits": pages.hits_json(served, found)})

    async def feature_map(request: Request) -> Response:
        return HTMLResponse(pages.map_page(s.get(request)))

    async def inspect_page(request: Request) -> Response:
        served = s.get(request)
        if s.model is None or served.source is None:
            return HTMLResponse(pages.needs_model(served, "prompt inspector"))
        prompt = request.query_params.get("prompt", "")[: limits.text_chars]
        return HTMLResponse(pages.inspect_page(served, prompt))

    async def steer_page(request: Request) -> Response:
        served = s.get(request)
        if s.model is None or served.source is None:
            return HTMLResponse(pages.needs_model(served, "steering"))
        qp = request.query_params
        edits = qp.get("edit", "")[:200]
        prompt = qp.get("prompt", "I went to the")[: limits.text_chars]
        return HTMLResponse(pages.steer_page(served, edits, prompt))

    async def activations(request: Request) -> Response:
        served = s.get(request)
        f = s.feature(served, request)
        model, source = s.modelled(served)
        body = await s.body(request)
        text = params.text(body, "text", limits)
        params.token_count(model.tokenizer, text, "text", limits)
        result = await s.job(request, work.feature_on_text, model, source, text, f)
        scale = served.stats[f].max_activation
        return JSONResponse({**result.__dict__, "html": fragments.test_fragment(result, scale)})

    async def inspect(request: Request) -> Response:
        served = s.get(request)
        model, source = s.modelled(served)
        body = await s.body(request)
        prompt = params.text(body, "prompt", limits)
        n = params.token_count(model.tokenizer, prompt, "prompt", limits)
        position = params.integer(body, "position", -1, -n, n - 1)
        k = params.integer(body, "k", 5, 1, 20)
        result = await s.job(request, work.inspect, model, source, prompt, position, k)
        shown = sorted({f for t in result.tokens for f, _ in t.features})
        described = served.index.describe(shown)
        return JSONResponse(
            {
                "tokens": [t.token for t in result.tokens],
                "features": [t.features for t in result.tokens],
                "next_tokens": result.next_tokens,
                "html": fragments.inspect_fragment(served, result, described),
            }
        )

    async def steer(request: Request) -> Response:
        served = s.get(request)
        model, source = s.modelled(served)
        body = await s.body(request)
        prompt = params.text(body, "prompt", limits)
        params.token_count(model.tokenizer, prompt, "prompt", limits)
        interventions = _interventions(s, served, model, source, body)
        config = _generation(body, limits)
        top = params.integer(body, "top", 10, 1, 20)
        result = await s.job(request, work.steer, model, prompt, interventions, config)
        return JSONResponse(
            {
                "clean": result.clean_rollouts.texts,
                "steered": result.steered_rollouts.texts,
                "clean_top": result.clean.top(top),
                "steered_top": result.steered.top(top),
                "html": fragments.steer_fragment(result, top),
            }
        )

    async def sweep(request: Request) -> Response:
        served = s.get(request)
        model, source = s.modelled(served)
        body = await s.body(request)
        prompt = params.text(body, "prompt", limits)
        params.token_count(model.tokenizer, prompt, "prompt", limits)
        loss_text = params.text(body, "loss_text", limits)
        params.token_count(model.tokenizer, loss_text, "loss_text", limits)
        feature = params.integer(body, "feature", -1, 0, served.index.n_features - 1)
        op = body.get("op", "clamp")
        if op not in OPS or op == "ablate":
            raise BadRequest(f"op must be clamp, add or scale for a sweep, got {op!r}")
        values = params.numbers(body, "values", limits.sweep_points)
        vocab = body.get("vocabulary", "")
        vocabulary = params.strings(
            {"v": vocab.replace(",", "\n") if isinstance(vocab, str) else vocab}, "v", 50, 100
        )
        if not vocabulary:
            raise BadRequest(
                "'vocabulary' is empty: give the target words a rollout should mention"
            )
        where = _positions(body)
        error_term = params.flag(body, "error_term", True)
        config = _generation(body | {"temperature": body.get("temperature", 1.0)}, limits)
        points = await s.job(
            request, work.sweep, model, source, feature, op, values, where, error_term,
            prompt, vocabulary, loss_text, config,
        )  # fmt: skip
        return JSONResponse(
            {
                "points": [
                    {
                        "coefficient": p.coefficient,
                        "success": p.success,
                        "loss": p.loss,
                        "texts": list(p.texts),
                    }
                    for p in points
                ],
                "html": fragments.sweep_fragment(points, op),
            }
        )

    async def queue(request: Request) -> Response:
        ticket = request.query_params.get("ticket", "")[:32]
        return JSONResponse({"ahead": s.worker.ahead(ticket), "pending": s.worker.pending()})

    async def css(request: Request) -> Response:
        return Response(CSS, media_type="text/css")

    async def js(request: Request) -> Response:
        return Response(JS, media_type="text/javascript")

    routes = [
        Route("/", home),
        Route("/static/style.css", css),
        Route("/static/app.js", js),
        Route("/api/queue", queue),
        Route("/i/{name}", overview),
        Route("/i/{name}/feature/{f:int}", feature),
        Route("/i/{name}/feature/{f:int}.json", feature_json),
        Route("/i/{name}/search", search),
        Route("/i/{name}/map", feature_map),
        Route("/i/{name}/inspect", inspect_page),
        Route("/i/{name}/steer", steer_page),
        Route("/api/i/{name}/search", search_api),
        Route("/api/i/{name}/feature/{f:int}/activations", activations, methods=["POST"]),
        Route("/api/i/{name}/inspect", inspect, methods=["POST"]),
        Route("/api/i/{name}/steer", steer, methods=["POST"]),
        Route("/api/i/{name}/sweep", sweep, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _http_error,
            SaescopeError: _saescope_error,
            QueueFull: _queue_full,
            Exception: _internal_error,
        },
        lifespan=_lifespan(s),
    )
    app.state.server = s
    return app


def _lifespan(s: Server) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        s.worker.close()

    return lifespan


def _interventions(
    s: Server, served: Served, model: LanguageModel, source: Any, body: dict[str, Any]
) -> list[Intervention]:
    """The feature edits, neuron clamps and contrastive vector a steering request asks for."""
    limits = s.limits
    where = _positions(body)
    edits = []
    for line in params.strings(body, "edits", limits.edits, 100):
        op, _, spec = line.partition(" ")
        if op not in OPS:
            raise BadRequest(f"edit {line!r}: start with one of {', '.join(OPS)}, e.g. clamp 12=40")
        edit = Edit.parse(spec.strip(), op)
        if edit.index >= served.index.n_features:
            raise BadRequest(
                f"edit {line!r}: feature {edit.index} does not exist (0..{served.index.n_features - 1})",
                404,
            )
        edits.append(edit)
    out: list[Intervention] = []
    if edits:
        error_term = params.flag(body, "error_term", True)
        out.append(FeatureIntervention(source.sae, tuple(edits), where, error_term=error_term))
    by_site: dict[str, list[Edit]] = {}
    for line in params.strings(body, "neurons", limits.edits, 100):
        site, sep, spec = line.rpartition(":")
        if not sep or not site:
            raise BadRequest(
                f"neuron {line!r}: expected SITE:UNIT=VALUE, e.g. layers.6.mlp_act:13=-5"
            )
        model.site(site)  # an unknown site is refused here, with the model's sites named
        by_site.setdefault(site, []).append(Edit.parse(spec, "clamp"))
    for site, unit_edits in by_site.items():
        UnitIntervention(site, tuple(unit_edits), where).site(model)  # unit out of range: 422
        out.append(UnitIntervention(site, tuple(unit_edits), where))
    positive = body.get("vector_positive") or ""
    negative = body.get("vector_negative") or ""
    if positive or negative:
        pos = params.text(body, "vector_positive", limits)
        neg = params.text(body, "vector_negative", limits)
        params.token_count(model.tokenizer, pos, "vector_positive", limits)
        params.token_count(model.tokenizer, neg, "vector_negative", limits)
        coefficient = params.number(body, "vector_coefficient", 4.0, -1e4, 1e4)
        out.append(_Contrastive(source.site, pos, neg, coefficient, where))
    if not out:
        raise BadRequest("nothing to steer with: give feature edits, neuron edits or a vector")
    return out


class _Contrastive:
    """A steering vector from two prompts, computed on the model thread when first applied
    (its forward passes go through the queue like any other model work)."""

    def __init__(self, site: str, positive: str, negative: str, coef: float, where: Any) -> None:
        self.at, self.positive, self.negative = site, positive, negative
        self.coefficient, self.positions = coef, where
        self._inner: VectorIntervention | None = None

    def _resolve(self, model: LanguageModel) -> VectorIntervention:
        if self._inner is None:
            from saescope.steer.vectors import contrastive_vector

            vector = contrastive_vector(model, self.at, self.positive, self.negative)
            self._inner = VectorIntervention(self.at, vector, self.coefficient, self.positions)
        return self._inner

    def site(self, model: LanguageModel) -> Any:
        return self._resolve(model).site(model)

    def site_fn(self, model: LanguageModel, tracker: Any) -> Any:
        return self._resolve(model).site_fn(model, tracker)


def _positions(body: dict[str, Any]) -> Any:
    value = body.get("positions", "all")
    if value not in ("all", "generated"):
        raise BadRequest(f"'positions' must be all or generated, got {value!r}")
    return ALL if value == "all" else GENERATED


def _generation(body: dict[str, Any], limits: Limits) -> GenerationConfig:
    new = params.integer(body, "max_new_tokens", 20, 1, limits.new_tokens)
    samples = params.integer(body, "samples", 1, 1, limits.samples)
    temperature = params.number(body, "temperature", 0.0, 0.0, 10.0)
    seed = params.integer(body, "seed", 0, 0, 2**31 - 1)
    sample = temperature > 0
    if samples > 1 and not sample:
        raise BadRequest(f"{samples} samples need a temperature > 0 (greedy rollouts are equal)")
    return GenerationConfig(
        max_new_tokens=new,
        samples=samples,
        sample=sample,
        temperature=temperature if sample else 1.0,
        seed=seed,
    )


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _reply(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    body = f"<h1>{status}</h1><p class='error'>{fragments.esc(message)}</p><p><a href='/'>indexes</a></p>"
    return HTMLResponse(pages.layout(f"error {status}", body), status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _reply(request, exc.status_code, str(exc.detail))


async def _saescope_error(request: Request, exc: Exception) -> Response:
    status = exc.status if isinstance(exc, BadRequest) else 422
    return _reply(request, status, str(exc))


async def _queue_full(request: Request, exc: Exception) -> Response:
    return _reply(request, 429, str(exc))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("error serving %s %s", request.method, request.url.path)
    return _reply(request, 500, "internal error (logged by the server); the server keeps running")


def open_served(
    specs: Sequence[tuple[str, str]], saes: dict[str, str], metrics: dict[str, str]
) -> list[Served]:
    """Load each (name, index path) with its SAE and metrics by name."""
    from saescope.serve.state import load_served

    return [load_served(n, p, saes.get(n), metrics.get(n)) for n, p in specs]


__all__ = ["Server", "create_app", "open_served"]
