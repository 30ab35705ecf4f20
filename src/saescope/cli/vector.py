"""``saescope vector`` (a contrastive steering vector and its SAE features) and ``saescope
frontier`` (the vector against its features on the success-vs-loss plane)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from saescope.cli.common import add_command, add_model_args
from saescope.errors import SaescopeError

log = logging.getLogger(__name__)


def _prompts(texts: list[str] | None, files: list[str] | None, flag: str) -> list[str]:
    """The prompts of ``--positive`` / ``--negative`` and their ``-file`` forms (one a line)."""
    prompts = list(texts or [])
    for name in files or []:
        path = Path(name)
        if not path.is_file():
            raise SaescopeError(f"{flag}-file {path}: no such file (one prompt per line)")
        prompts += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts or any(not p for p in prompts):
        raise SaescopeError(f"give at least one non-empty {flag} prompt (or {flag}-file)")
    return prompts


def _index(path: str | None) -> Any:  # -> FeatureIndex | None
    if path is None:
        return None
    from saescope.interpret.query import FeatureIndex

    if not Path(path).is_file():
        raise SaescopeError(f"--index {path}: no such file; build one with `saescope index`")
    return FeatureIndex(path)


def cmd_vector(args: argparse.Namespace) -> None:
    from saescope.models import load_model
    from saescope.steer import SteeringVector, contrastive_vector, save_vector

    positive = _prompts(args.positive, args.positive_file, "--positive")
    negative = _prompts(args.negative, args.negative_file, "--negative")
    if args.reduce == "aligned" and len(positive) != len(negative):
        raise SaescopeError(
            f"--reduce aligned pairs prompts one to one: {len(positive)} positive, "
            f"{len(negative)} negative; give as many of each or use --reduce mean"
        )
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    site = model.site(args.site).name
    sae = _load_sae(args.sae, model) if args.sae else None
    tensor = contrastive_vector(model, site, positive, negative, reduce=args.reduce)
    steering = SteeringVector(
        tensor, site, model.name, args.reduce, tuple(positive), tuple(negative)
    )
    if sae is not None:
        steering.check_sae(sae, Path(args.sae))
    out = save_vector(steering, args.out)
    log.info("wrote %s: %s vector at %s, shape %s", out, args.reduce, site, list(tensor.shape))
    if sae is not None:
        _render_decomposition(steering, sae, args)


def _load_sae(path: str, model: Any) -> Any:
    from saescope.cli.steer import _load_sae as load

    return load(path, model)


def _render_decomposition(steering: Any, sae: Any, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from saescope.steer.vectors import decompose, flat

    v = flat(steering.vector)
    parts = decompose(v, sae, k=args.terms, method=args.method)
    index = _index(args.index)
    what = "the sum of its rows" if steering.vector.dim() == 2 else "the vector"
    table = Table(
        title=f"{what} (norm {float(v.norm()):.1f}) as {args.terms} SAE decoder rows ("
        f"{args.method}): {parts.explained:.1%} of its squared norm explained"
    )
    for name in ("#", "feature", "coefficient", "share", "cumulative", "density", "description"):
        table.add_column(name, justify="right" if name not in ("description",) else "left")
    assert parts.cumulative is not None
    for rank, (f, c, share) in enumerate(
        zip(parts.features.tolist(), parts.coefficients, parts.contributions, strict=True)
    ):
        density, description = "", ""
        if index is not None:
            record = index.feature(f)
            density = f"{record.density:.2%}" + (" DENSE" if record.dense else "")
            description = record.description
        table.add_row(
            str(rank + 1),
            str(f),
            f"{float(c):.2f}",
            f"{float(share):.1%}",
            f"{float(parts.cumulative[rank]):.1%}",
            density,
            escape(description),
        )
    if index is not None:
        index.close()
    Console().print(table)


def cmd_frontier(args: argparse.Namespace) -> None:
    from saescope.models import load_model
    from saescope.sae import load_sae
    from saescope.steer import GenerationConfig, load_vector, plot_steering, run_frontier

    coefficients = _floats(args.coefs, "--coefs")
    features = None if args.features == "auto" else _ids(args.features)
    topic = [w.strip() for w in ",".join(args.topic).split(",") if w.strip()]
    if not topic:
        raise SaescopeError("--topic is empty; give the words that mark a rollout on topic")
    start = time.perf_counter()
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    steering = load_vector(args.vector, model)
    sae = load_sae(args.sae, device=model.device)
    steering.check_sae(sae, Path(args.sae))
    config = GenerationConfig(
        max_new_tokens=args.max_new, samples=args.rollouts, sample=True, seed=args.seed
    )
    frontier = run_frontier(
        model,
        steering,
        sae,
        args.prompt,
        topic,
        _neutral_batches(model, args),
        coefficients,
        features,
        args.auto_features,
        config,
    )
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_steering(
        frontier.curves,
        out / "frontier.png",
        frontier.clean_loss,
        title=f"{Path(args.vector).name}: on topic vs loss ({frontier.rollouts} rollouts a point)",
    )
    table = _write_json(frontier, args, out / "frontier.json", seconds)
    _render_frontier(frontier, table, args)
    log.info("wrote %s and %s (%.0f s)", png, out / "frontier.json", seconds)


def _neutral_batches(model: Any, args: argparse.Namespace) -> list:
    import itertools

    import torch

    from saescope.data import ContextConfig, load_corpus, pack_contexts

    cfg = ContextConfig(context_size=args.loss_context_size, seed=args.loss_seed)
    contexts = itertools.islice(
        pack_contexts(load_corpus(args.dataset), model.tokenizer, cfg), args.loss_contexts
    )
    ids = list(contexts)
    if not ids:
        raise SaescopeError(f"--dataset {args.dataset} gave no contexts for the loss")
    return list(torch.stack(ids).split(4))


def _write_json(frontier: Any, args: argparse.Namespace, path: Path, seconds: float) -> list:
    from saescope._files import strict_json, write_atomic

    rows = [
        {
            "condition": name,
            "coefficient": p.coefficient,
            "on_topic": round(p.success * frontier.rollouts),
            "rollouts": frontier.rollouts,
            "success": p.success,
            "loss": p.loss,
            "loss_increase": p.loss - frontier.clean_loss,
            "norm": float(frontier.vectors[name].norm()),
            "texts": list(p.texts),
        }
        for name, points in frontier.curves.items()
        for p in points
    ]
    record = {
        "vector": str(args.vector),
        "sae": str(args.sae),
        "features": list(frontier.features),
        "prompts": list(args.prompt),
        "topic": args.topic,
        "clean_loss": frontier.clean_loss,
        "seed": args.seed,
        "max_new_tokens": args.max_new,
        "seconds": seconds,
        "points": rows,
    }
    write_atomic(path, strict_json(record).encode())
    return rows


def _render_frontier(frontier: Any, rows: list, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"on topic ({', '.join(args.topic)}) vs loss on neutral text (clean "
        f"{frontier.clean_loss:.3f}); coefficient 0 is the unsteered model, same seed everywhere"
    )
    for name in ("condition", "coef", "on topic", "success", "loss", "Δ loss", "first rollout"):
        table.add_column(
            name, justify="left" if name in ("condition", "first rollout") else "right"
        )
    for row in rows:
        table.add_row(
            row["condition"],
            f"{row['coefficient']:g}",
            f"{row['on_topic']}/{row['rollouts']}",
            f"{row['success']:.2f}",
            f"{row['loss']:.3f}",
            f"{row['loss_increase']:+.3f}",
            escape(row["texts"][0][:80].replace("\n", " ")),  # rollouts are not rich markup
        )
    Console().print(table)


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise SaescopeError(f"{flag} {text!r}: expected numbers like 0,2,4,8") from err
    if not values:
        raise SaescopeError(f"{flag} is empty; expected numbers like 0,2,4,8")
    return values


def _ids(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise SaescopeError(f"--features {text!r}: expected auto or ids like 123,456") from err


def register(sub: Any) -> None:
    from saescope.steer.vectors import REDUCTIONS

    p = add_command(
        sub,
        "vector",
        cmd_vector,
        "a contrastive steering vector (ActAdd), saved, with its SAE features",
        "The difference of the activations at --site between --positive and --negative "
        "prompts (Turner et al. 2023). --reduce aligned (ActAdd): position by position, the "
        "shorter prompt padded with spaces, one row per token, added at the same token "
        "indices of the prompt being steered (row 0, BOS, is zero); mean: each prompt's mean "
        "over its tokens (BOS excluded), averaged over the prompts of each side; last: the last "
        "token's difference. Written to --out as safetensors with the site, model and prompts. "
        "With --sae, prints the vector written as --terms SAE decoder rows (orthogonal "
        "matching pursuit): each feature's coefficient, its share of the squared norm, the "
        "cumulative share, and with --index its density (DENSE above 10% of tokens) and "
        "description, so a vector that is mostly one token's feature shows it. An aligned "
        "vector is decomposed as the sum of its rows.",
    )
    add_model_args(p)
    p.add_argument("--site", required=True, help="hook site, e.g. layers.6.resid_post")
    for side in ("positive", "negative"):
        p.add_argument(f"--{side}", action="append", metavar="TEXT", help="prompt; repeatable")
        p.add_argument(
            f"--{side}-file", action="append", metavar="FILE", help="prompts, one a line"
        )
    p.add_argument("--reduce", choices=list(REDUCTIONS), default="aligned")
    p.add_argument("--out", required=True, help="the vector file to write (.safetensors)")
    p.add_argument("--sae", help="SAE directory at the same site: print the decomposition")
    p.add_argument("--index", help="the SAE's index.db: descriptions and densities")
    p.add_argument("--terms", type=int, default=10, help="decoder rows in the decomposition")
    p.add_argument("--method", choices=["omp", "encoder"], default="omp")

    f = add_command(
        sub,
        "frontier",
        cmd_frontier,
        "a steering vector against its SAE features: success vs loss",
        "For the vector in --vector, its top SAE feature(s) and the vector with them "
        "projected out (GDM's method), at each --coefs: the fraction of --rollouts sampled "
        "continuations of each --prompt that contain a --topic word (whole words, plurals "
        "allowed), and the next-token loss on --loss-contexts contexts of --dataset with the "
        "intervention applied at every token. The features condition adds the vector's "
        "component in the features' decoder span, rescaled to the vector's norm (matching "
        "strength); the projected one is not rescaled. The same seed everywhere. Writes "
        "OUT/frontier.png (the success-vs-loss plane) and OUT/frontier.json (every point and "
        "rollout), and prints the table with rollout counts.",
    )
    add_model_args(f)
    f.add_argument("--vector", required=True, help="a file written by `saescope vector`")
    f.add_argument("--sae", required=True, help="SAE directory at the vector's site")
    f.add_argument("--prompt", action="append", required=True, help="prompt; repeatable")
    f.add_argument(
        "--topic", action="append", required=True, help="on-topic words, comma-separated"
    )
    f.add_argument("--coefs", default="0,2,4,8", help="coefficients, comma-separated")
    f.add_argument("--features", default="auto", help="auto (from the decomposition) or ids")
    f.add_argument("--auto-features", type=int, default=1, help="how many features auto takes")
    f.add_argument("--rollouts", type=int, default=12, help="sampled rollouts per prompt")
    f.add_argument("--max-new", type=int, default=24, help="tokens per rollout")
    f.add_argument("--seed", type=int, default=0, help="generation seed, shared by all points")
    f.add_argument("--dataset", default="default", help="neutral text for the loss")
    f.add_argument("--loss-contexts", type=int, default=8, help="contexts for the loss")
    f.add_argument("--loss-context-size", type=int, default=64, help="tokens per context")
    f.add_argument("--loss-seed", type=int, default=2026, help="document shuffle for the loss")
    f.add_argument("--out", required=True, help="directory for frontier.png and frontier.json")
