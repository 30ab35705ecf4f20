"""``saescope ito-frontier``: dictionaries judged by inference-time optimisation."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

from saescope.cli.common import add_command, add_data_args, ints


def cmd_ito_frontier(args: argparse.Namespace) -> None:
    import torch

    from saescope.activations import open_activations
    from saescope.coding import EncoderSpec, with_encoder
    from saescope.data import ContextConfig, keep_positions, load_corpus, pack_contexts
    from saescope.evaluate import ito
    from saescope.evaluate.run import check_compatible
    from saescope.sae import load_sae, sae_site

    saes = {Path(d).name: load_sae(d) for d in args.sae}
    cache = open_activations(args.acts)
    model = None
    if args.model:
        from saescope.models import load_model

        model = load_model(args.model, dtype=args.dtype, device=args.device)
    for name, sae in saes.items():
        check_compatible(name, sae, cache, model)
    first = next(iter(saes.values()))
    site = sae_site(first)
    held = cache.split(args.tokens)[1] if args.tokens < len(cache) else None
    batches = cache.batches(4096, site, shuffle=False, shards=held)
    rows: list = []
    for batch in batches:  # a batch may come back empty: keep reading until --tokens rows
        rows += [batch[: args.tokens - sum(map(len, rows))].float()] if len(batch) else []
        if sum(map(len, rows)) >= args.tokens:
            break
    splice = None
    if model is not None:
        context = ContextConfig(context_size=args.context_size, seed=args.seed)
        corpus = load_corpus(args.dataset, text_field=args.text_field)
        n = max(1, args.loss_tokens // context.context_size)
        contexts = list(itertools.islice(pack_contexts(corpus, model.tokenizer, context), n))
        exclude = first.cfg.metadata.exclude_special_tokens
        splice = ito.spliced_splice(
            model,
            list(torch.stack(contexts).split(2)),
            lambda ids: keep_positions(ids, model.tokenizer, exclude),
        )
    points = ito.frontier(saes, rows, args.l0, args.method, splice, not args.no_random)
    name = args.feature_sae or next(iter(saes))
    if name not in saes:
        from saescope.errors import SaescopeError

        raise SaescopeError(f"--feature-sae {name!r} is not one of the --sae names {list(saes)}")
    # ITO at the encoder's own L0, so the two codes are compared at equal sparsity
    own = next(p.l0 for p in points if p.dictionary == name and p.coder == "encoder")
    coded = with_encoder(saes[name], EncoderSpec(args.method, max(1, round(own))))
    feature = args.feature
    if feature is None:  # the busiest latent of the encoder: a scatter with points in it
        counts = torch.stack([saes[name].encode(x).to_dense().gt(0).sum(0) for x in rows])
        feature = int(counts.sum(0).argmax())
    enc, ito_acts = ito.feature_scatter(saes[name], coded, rows, feature)
    agree = ito.agreement(saes[name], coded, rows)
    info = {"saes": list(args.sae), "cache": str(args.acts), "model": args.model,
            "tokens": sum(len(r) for r in rows), "method": args.method,
            "scatter": {"sae": name, "feature": feature, "coder": f"{args.method}:k={max(1, round(own))}"},
            "agreement": agree.__dict__}  # fmt: skip
    files = ito.write_frontier(points, args.out, info, (name, feature, enc, ito_acts))
    print(ito.frontier_table(points))
    print("\n".join(str(f) for f in files))


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "ito-frontier",
        cmd_ito_frontier,
        "L0 / quality frontiers of dictionaries coded by inference-time optimisation",
        "For each SAE's dictionary and each target L0: FVU (on --tokens held-out rows of the "
        "cache) and, with --model, the spliced next-token loss (delta loss, loss recovered), "
        "with codes from a pursuit over the decoder (ITO) and from the encoder truncated to its "
        "top k; each encoder as trained is one point, and a random dictionary of the first "
        "SAE's shape is the floor. Writes OUT/frontier.{json,md,png} and OUT/scatter.png (ITO "
        "vs encoder activation of one feature).",
    )
    p.add_argument("--sae", nargs="+", required=True, help="SAE directories (one site)")
    p.add_argument("--acts", required=True, help="activation cache (its last shards are used)")
    p.add_argument("--model", help="model to splice into (omit: FVU only)")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--l0", type=ints, default=[4, 8, 16, 32, 64, 128], help="target L0s")
    p.add_argument("--method", choices=["gp", "mp", "omp"], default="gp", help="the pursuit")
    p.add_argument("--tokens", type=int, default=16_384, help="reconstruction rows")
    p.add_argument("--loss-tokens", type=int, default=4_096, help="tokens for the spliced loss")
    p.add_argument("--no-random", action="store_true", help="skip the random dictionary")
    p.add_argument("--feature", type=int, help="scatter feature (default: the busiest)")
    p.add_argument("--feature-sae", help="the SAE (directory name) of the scatter")
    p.add_argument("--out", required=True, help="output directory")
    add_data_args(p)
