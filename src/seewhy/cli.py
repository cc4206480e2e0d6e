"""The command line: argument parsing and exit codes only (the work is in ``seewhy.jobs``).

Exit codes: 0 all done; 1 some samples failed (each in errors.jsonl); 2 bad usage or an
unusable model/input, with a one-line reason. Importing this module does not import torch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(
    name="seewhy",
    help="Why does your image model decide what it decides, and can you trust the explanation?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

T = TypeVar("T")


def _run(work: Callable[[], T]) -> T:
    """Run a command body: a SeewhyError becomes one line on stderr and exit code 2."""
    from seewhy.core.errors import SeewhyError

    try:
        return work()
    except SeewhyError as exc:
        message = " ".join(str(exc).split())
        typer.echo(f"seewhy: error: {message}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("seewhy: interrupted", err=True)
        raise typer.Exit(130) from None


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


Model = Annotated[
    list[str],
    typer.Option(
        "--model",
        "-m",
        help="A model card (.toml) or an arch string (timm:NAME, torchvision:NAME, "
        "FILE.py:FACTORY, package.module:FACTORY, torchscript:FILE). Repeat to compare models.",
    ),
]


Images = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Image files, folders of images (recursively; in a <class>/ layout the folder "
        "is the true label) or a CSV/Parquet manifest."
    ),
]
Method = Annotated[
    str,
    typer.Option(
        help="Comma list, settings in brackets: gradcam, gradcam++, hirescam, xgradcam, "
        "layercam, eigencam, scorecam, saliency, inputxgrad, ig, smoothgrad, "
        "expected-gradients (shap), occlusion, rise; e.g. 'ig(steps=32),occlusion(window=32)'."
    ),
]
TreeAwareMethod = Annotated[
    str | None,
    typer.Option(
        help="Comma list, settings in brackets: gradcam, gradcam++, hirescam, xgradcam, "
        "layercam, eigencam, scorecam, saliency, inputxgrad, ig, smoothgrad, "
        "expected-gradients (shap), occlusion, rise, and tree-shap for tree models; e.g. "
        "'ig(steps=32),occlusion(window=32)'. Default: gradcam (tree-shap for tree models).",
        show_default=False,
    ),
]
Target = Annotated[
    str,
    typer.Option(
        help="pred, a class index or label, true (a manifest's --target-col), "
        "value or -value (regression: what raises / lowers the output)."
    ),
]
Layer = Annotated[str | None, typer.Option(help="CAM layer (module name); default auto.")]
Out = Annotated[Path, typer.Option(help="Output folder.")]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps.")]
BatchSize = Annotated[
    int,
    typer.Option(
        help="The largest batch any forward pass sends to the model: images are "
        "explained in groups of this size, Score-CAM's masked copies go in batches of it."
    ),
]
Seed = Annotated[int, typer.Option(help="Seed for --sample and random methods.")]
NBackground = Annotated[
    int | None,
    typer.Option(
        help="Background rows. Expected gradients draw baselines from this many of the given "
        "samples (default 32; fewer than 2: the zero baseline); tree-shap runs interventional "
        "on this many rows when given, path-dependent when not.",
        show_default=False,
    ),
]
Data = Annotated[Path | None, typer.Option(help="A manifest (CSV/Parquet) instead of IMAGEs.")]
SampleN = Annotated[
    int | None,
    typer.Option(help="N random samples of the manifest, folders or images (seeded)."),
]
IdCol = Annotated[
    str | None,
    typer.Option(help="Manifest id column [default: id if present, else the image path]."),
]
ImageCol = Annotated[str, typer.Option(help="Manifest image column.")]
TargetCol = Annotated[
    str | None, typer.Option(help="Manifest column with the true label (for --target true).")
]
Text = Annotated[
    str | None, typer.Option(help="The text every IMAGE goes with, for image+text models.")
]
TextCol = Annotated[str | None, typer.Option(help="Manifest column with each sample's text.")]
Checkpoint = Annotated[str | None, typer.Option(help="Checkpoint for a single arch-string model.")]
Labels = Annotated[str | None, typer.Option(help="Comma list of class names (single model).")]
TrustCheckpoint = Annotated[
    bool, typer.Option(help="Allow checkpoints that need full unpickling (runs code!).")
]
Report = Annotated[bool, typer.Option(help="Write report.html.")]
Quiet = Annotated[bool, typer.Option(help="No progress bar or console summary.")]


def _trees_only(models: list[str]) -> bool:
    """Whether every ``--model`` is a tabular tree model (rows need no images then)."""
    from seewhy.models.tabular import is_tabular_spec

    return bool(models) and all(is_tabular_spec(m) for m in models)


def _samples(
    images: list[Path] | None,
    data: Path | None,
    *,
    sample: int | None,
    seed: int,
    id_col: str | None,
    image_col: str,
    target_col: str | None,
    text: str | None,
    text_col: str | None,
    mask_col: str | None = None,
    masks: list[Path] | None = None,
    images_needed: bool = True,
) -> list[Any]:
    """The samples of IMAGEs or ``--data``, with ``--text`` and ``--mask`` attached
    (``images_needed=False``: tree models alone, a manifest without images is read)."""
    import dataclasses

    from seewhy.data.samples import from_inputs, from_manifest

    if images and data:
        raise _usage("give IMAGE paths or --data MANIFEST, not both")
    if text is not None and text_col is not None:
        raise _usage("give --text (one text for every image) or --text-col, not both")
    if masks and mask_col:
        raise _usage("give --mask (one per IMAGE) or --mask-col, not both")
    samples = (
        from_manifest(
            data,
            id_col=id_col,
            image_col=image_col,
            target_col=target_col,
            text_col=text_col,
            mask_col=mask_col,
            sample=sample,
            seed=seed,
            images=images_needed,
        )
        if data
        else from_inputs(
            images or [],
            sample=None if masks else sample,
            seed=seed,
            id_col=id_col,
            image_col=None if image_col == "image_path" else image_col,
            target_col=target_col,
            text_col=text_col,
            mask_col=mask_col,
            images=images_needed,
        )
    )
    if masks:
        files = [p for p in images or [] if p.is_file()]
        if data or len(files) != len(images or []) or len(samples) != len(masks):
            raise _usage(
                f"--mask: {len(masks)} masks for {len(samples)} images; give one --mask per "
                "IMAGE file, in the same order (for folders or manifests use --mask-col)"
            )
        samples = [
            dataclasses.replace(s, mask_path=str(m)) for s, m in zip(samples, masks, strict=True)
        ]
        if sample is not None:
            from seewhy.data.samples import pick

            samples = pick(samples, sample, seed)
    if text is not None:
        samples = [dataclasses.replace(s, text=text) for s in samples]
    return samples


def _text_from(text: str | None, text_col: str | None) -> str | None:
    """The flag the samples' text comes from, named if no model takes text."""
    if text is not None:
        return "--text"
    return None if text_col is None else f"--text-col {text_col}"


@app.command()
def explain(
    images: Images = None,
    model: Model = [],  # noqa: B006 - typer reads the default
    method: TreeAwareMethod = None,
    target: Target = "pred",
    layer: Layer = None,
    out: Out = Path("seewhy-out"),
    device: Device = None,
    batch_size: BatchSize = 8,
    seed: Seed = 0,
    n_background: NBackground = None,
    data: Data = None,
    sample: SampleN = None,
    id_col: IdCol = None,
    image_col: ImageCol = "image_path",
    target_col: TargetCol = None,
    text: Text = None,
    text_col: TextCol = None,
    checkpoint: Checkpoint = None,
    labels: Labels = None,
    trust_checkpoint: TrustCheckpoint = False,
    report: Report = True,
    quiet: Quiet = False,
) -> None:
    """Explain images with one or more models: maps, figures, summary.json and report.html.

    Examples:

    \b
      seewhy explain xray1.png xray2.png -m convnext.toml -m effnet.toml --method gradcam,scorecam
      seewhy explain xray1.png -m timm:resnet50 --checkpoint best.pth --labels normal,fracture
      seewhy explain --data cases.csv --sample 20 --seed 1 -m convnext.toml --out review
      seewhy explain data/test --sample 10 -m best.toml --target true
      seewhy explain scan.png --text "fracture of the left wrist" -m imgtext.toml --method ig,shap
      seewhy explain --data houses.csv --text-col caption -m fusion.toml --method ig
    """

    def work() -> int:
        from seewhy.jobs.explain import ExplainOptions, run_explain
        from seewhy.methods.registry import split_method_specs
        from seewhy.render.console import print_summary

        samples = _samples(
            images,
            data,
            sample=sample,
            seed=seed,
            id_col=id_col,
            image_col=image_col,
            target_col=target_col,
            text=text,
            text_col=text_col,
            images_needed=not _trees_only(model),
        )
        opts = ExplainOptions(
            methods=split_method_specs(method) if method else [],
            n_background=n_background,
            target=target,
            layer=layer,
            out=out,
            device=device,
            batch_size=batch_size,
            seed=seed,
            trust_checkpoint=trust_checkpoint,
            checkpoint=checkpoint,
            labels=_split([labels]) if labels else None,
            progress=not quiet,
            report=report,
            text_from=_text_from(text, text_col),
        )
        outcome = run_explain(samples, model, opts)
        if not quiet:
            print_summary(outcome.summary, outcome.out, outcome.failed)
        return outcome.exit_code

    raise typer.Exit(_run(work))


ChecksPrecision = Annotated[
    str,
    typer.Option(
        help="The trust checks' deletion/insertion forwards: float32 (exact, the same on every "
        "machine) or auto (bfloat16 where the hardware computes it natively: about 2x faster "
        "there, AUCs within 0.01; float32 elsewhere)."
    ),
]


@app.command()
def check(
    images: Images = None,
    model: Model = [],  # noqa: B006 - typer reads the default
    method: Method = "gradcam",
    target: Target = "pred",
    layer: Layer = None,
    out: Out = Path("seewhy-out"),
    device: Device = None,
    batch_size: BatchSize = 8,
    seed: Seed = 0,
    n_background: NBackground = None,
    data: Data = None,
    sample: SampleN = None,
    id_col: IdCol = None,
    image_col: ImageCol = "image_path",
    target_col: TargetCol = None,
    text: Text = None,
    text_col: TextCol = None,
    mask: Annotated[
        list[Path] | None,
        typer.Option(
            help="A mask image per IMAGE, in order (non-zero pixels mark what matters); "
            "framed as the model frames the image."
        ),
    ] = None,
    mask_col: Annotated[
        str | None, typer.Option(help="Manifest column with each image's mask file.")
    ] = None,
    box_cols: Annotated[
        str | None,
        typer.Option(
            help="Manifest columns of a box x0,y0,x1,y1 in the image's pixels "
            "[default: x0,y0,x1,y1 when the manifest has them]."
        ),
    ] = None,
    thresholds: Annotated[
        Path | None,
        typer.Option(help="A TOML file overriding the verdict's thresholds (SPEC section 6)."),
    ] = None,
    steps: Annotated[int, typer.Option(help="Deletion/insertion steps.")] = 50,
    randomization: Annotated[
        str,
        typer.Option(
            help="blocks (per block/stage, cascading from the head), layers (every layer "
            "with parameters: slower) or none."
        ),
    ] = "blocks",
    randomization_mode: Annotated[
        str,
        typer.Option(
            help="cascade (block after block from the head, the ones before kept randomized) "
            "or independent (each block alone)."
        ),
    ] = "cascade",
    precision: ChecksPrecision = "float32",
    checkpoint: Checkpoint = None,
    labels: Labels = None,
    trust_checkpoint: TrustCheckpoint = False,
    report: Report = True,
    quiet: Quiet = False,
) -> None:
    """Can these maps be trusted? Randomization, deletion/insertion, localization and red
    flags, and a verdict per model and method (pass, warn, fail) with reasons.

    Examples:

    \b
      seewhy check xray1.png xray2.png --mask m1.png --mask m2.png -m convnext.toml
      seewhy check cases.csv --mask-col mask -m convnext.toml -m effnet.toml --method gradcam,ig
      seewhy check data/test --sample 16 -m best.toml --thresholds strict.toml
    """

    def work() -> int:
        from seewhy.jobs.check import CheckOptions, refuse_tree_specs, run_check
        from seewhy.methods.registry import split_method_specs
        from seewhy.render.console import print_checks

        refuse_tree_specs(model)  # before the samples: a features table has no images
        samples = _samples(
            images,
            data,
            sample=sample,
            seed=seed,
            id_col=id_col,
            image_col=image_col,
            target_col=target_col,
            text=text,
            text_col=text_col,
            mask_col=mask_col,
            masks=mask,
        )
        opts = CheckOptions(
            methods=split_method_specs(method),
            n_background=n_background,
            target=target,
            layer=layer,
            out=out,
            device=device,
            batch_size=batch_size,
            seed=seed,
            trust_checkpoint=trust_checkpoint,
            checkpoint=checkpoint,
            labels=_split([labels]) if labels else None,
            progress=not quiet,
            report=report,
            thresholds=thresholds,
            steps=steps,
            randomization=randomization,
            randomization_mode=randomization_mode,
            box_cols=tuple(_split([box_cols])) if box_cols else None,
            precision=precision,
            text_from=_text_from(text, text_col),
        )
        outcome = run_check(samples, model, opts)
        if not quiet:
            print_checks(outcome.summary, outcome.out, outcome.failed)
        return outcome.exit_code

    raise typer.Exit(_run(work))


@app.command()
def dataset(
    manifests: Annotated[
        list[Path],
        typer.Argument(
            help="CSV/Parquet manifests; several are joined on --id-col (e.g. a price table and "
            "an image table)."
        ),
    ],
    model: Model = [],  # noqa: B006 - typer reads the default
    method: TreeAwareMethod = None,
    target: Target = "pred",
    layer: Layer = None,
    out: Out = Path("seewhy-out"),
    device: Device = None,
    batch_size: BatchSize = 8,
    seed: Seed = 0,
    n_background: NBackground = None,
    sample: SampleN = None,
    id_col: Annotated[
        str | None,
        typer.Option(help="The id column (several manifests are joined on it) [default: id]."),
    ] = None,
    image_col: ImageCol = "image_path",
    target_col: Annotated[
        str | None,
        typer.Option(help="The true value (regression) or label: errors, metrics and cohorts."),
    ] = None,
    text_col: TextCol = None,
    regions_col: Annotated[
        str | None,
        typer.Option(help="A label map per image (one class id per pixel, single-channel PNG)."),
    ] = None,
    region_names: Annotated[
        str | None,
        typer.Option(help="The label maps' classes in id order, e.g. soil,vegetation,water,road."),
    ] = None,
    explain_rows: Annotated[
        str,
        typer.Option(
            "--explain",
            help="cohorts (explain the cohorts' members) or all (every row).",
        ),
    ] = "cohorts",
    cohort_size: Annotated[int, typer.Option(help="Members per cohort (ties by id).")] = 32,
    check_sample: Annotated[
        int, typer.Option(help="Run the trust checks on N random rows (0: none).")
    ] = 0,
    precision: ChecksPrecision = "float32",
    figures: Annotated[
        bool, typer.Option(help="Draw each explained row's figure (maps are always saved).")
    ] = True,
    workers: Annotated[
        int, typer.Option(help="Worker processes decoding images (0: in the main process).")
    ] = 2,
    thresholds: Annotated[
        Path | None,
        typer.Option(help="A TOML file overriding the verdict's thresholds (SPEC section 6)."),
    ] = None,
    checkpoint: Checkpoint = None,
    labels: Labels = None,
    trust_checkpoint: TrustCheckpoint = False,
    report: Report = True,
    quiet: Quiet = False,
) -> None:
    """A whole table: predictions and errors for every row, cohorts (top and bottom decile,
    largest and smallest errors, misclassified, per class), their maps, galleries and region
    shares, checks on a sample, and one report.

    Examples:

    \b
      seewhy dataset houses.csv -m tiles.toml --target-col price --target value
      seewhy dataset prices.parquet images.csv --id-col id -m tiles.toml --target-col price \\
          --regions-col landcover --region-names soil,vegetation,water,road --check-sample 16
      seewhy dataset xrays.csv -m convnext.toml --target-col label --explain all --no-figures
    """

    def work() -> int:
        from seewhy.data.samples import from_manifests
        from seewhy.jobs.dataset import DatasetOptions, run_dataset
        from seewhy.methods.registry import split_method_specs
        from seewhy.render.console import print_dataset

        for m in manifests:
            if m.suffix.lower() not in (".csv", ".parquet", ".pq"):
                raise _usage(f"{m} is not a manifest: give CSV or Parquet files")
        samples = from_manifests(
            manifests,
            images=not _trees_only(model),
            id_col=id_col,
            image_col=image_col,
            target_col=target_col,
            text_col=text_col,
            regions_col=regions_col,
            sample=sample,
            seed=seed,
        )
        opts = DatasetOptions(
            methods=split_method_specs(method) if method else [],
            n_background=n_background,
            target=target,
            layer=layer,
            out=out,
            device=device,
            batch_size=batch_size,
            seed=seed,
            trust_checkpoint=trust_checkpoint,
            checkpoint=checkpoint,
            labels=_split([labels]) if labels else None,
            progress=not quiet,
            report=report,
            thresholds=thresholds,
            manifests=list(manifests),
            text_from=_text_from(None, text_col),
            id_col=id_col or "id",
            target_col=target_col,
            regions_col=regions_col,
            region_names=_split([region_names]) if region_names else None,
            explain=explain_rows,
            cohort_size=cohort_size,
            check_sample=check_sample,
            precision=precision,
            figures=figures,
            workers=workers,
        )
        outcome = run_dataset(samples, model, opts)
        if not quiet:
            print_dataset(outcome.summary, outcome.out, outcome.failed)
        return outcome.exit_code

    raise typer.Exit(_run(work))


def _usage(message: str) -> Exception:
    from seewhy.core.errors import UsageError

    return UsageError(message)


@app.command()
def layers(
    model: Annotated[str, typer.Argument(help="A model card (.toml) or an arch string.")],
    checkpoint: Annotated[str | None, typer.Option(help="Checkpoint to load first.")] = None,
    trust_checkpoint: Annotated[bool, typer.Option(help="Allow full unpickling.")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="Every module, not just spatial ones.")
    ] = False,
) -> None:
    """List the layers a CAM can read, with output shapes; the auto choice is marked (or why
    there is none said).

    Examples:

    \b
      seewhy layers timm:convnext_tiny
      seewhy layers convnext.toml --all
    """

    def work() -> None:
        from seewhy.api import auto_layer_name, layers, load_model
        from seewhy.core.errors import LayerError, MethodNotApplicableError

        m = load_model(
            model, checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, device="cpu"
        )
        rows = layers(m, spatial_only=False)
        named = m.layer if m.layer and m.layer != "auto" else None  # the card's (or --layer)
        try:
            auto, why = auto_layer_name(m), ""
        except (LayerError, MethodNotApplicableError) as exc:  # the list is still the answer
            auto, why = None, " ".join(str(exc).split("; ", 1)[0].split())  # its fix: below
        for r in [r for r in rows if show_all or r.spatial or r.name == named]:
            marks = [
                w
                for w, hit in (("auto", r.name == auto), ("the card's layer", r.name == named))
                if hit
            ]
            mark = f"  <- {', '.join(marks)}" if marks else ""
            typer.echo(f"{r.name:<40} {r.type:<24} {list(r.shape)}{mark}")
        if named:
            if named not in {r.name for r in rows}:
                from seewhy.core.errors import did_you_mean

                hint = did_you_mean(named, [r.name for r in rows])
                typer.echo(f"the card's layer '{named}' is not a layer of this model{hint}")
        elif auto is None:
            spatial = [r.name for r in rows if r.spatial]
            fix = (
                f"name one with --layer (e.g. --layer {spatial[-1]}, the last spatial layer) "
                'or layer = "NAME" in the model card'
                if spatial
                else "use a gradient or perturbation method, or a larger [preprocess] size "
                "if the maps shrink to 1x1 at this one"
            )
            typer.echo(f"no auto choice: {why}; {fix}")

    _run(work)


@app.command()
def report(
    out: Annotated[Path, typer.Argument(help="An output folder with summary.json.")],
) -> None:
    """(Re)render report.html from an output folder.

    Example:

    \b
      seewhy report seewhy-out
    """

    def work() -> None:
        from seewhy.core.errors import UsageError
        from seewhy.render.report import render_report

        if not (out / "summary.json").is_file():
            raise UsageError(
                f"{out} has no summary.json; run `seewhy explain ... --out {out}` first"
            )
        typer.echo(str(render_report(out)))

    _run(work)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("seewhy-demo"),
    quiet: Annotated[bool, typer.Option(help="No progress bar or console summary.")] = False,
) -> None:
    """Explain the bundled demo X-rays with two small models and three methods, check the
    maps (randomization, deletion/insertion, localization against the bundled masks, red
    flags) and give a verdict per model and method; offline.

    Example:

    \b
      seewhy demo --out seewhy-demo
    """

    def work() -> int:
        from seewhy.jobs.demo import run_demo
        from seewhy.render.console import print_checks, print_summary

        outcome = run_demo(out, progress=not quiet)
        if not quiet:
            print_summary(outcome.summary, outcome.out, outcome.failed, footer=False)
            print_checks(outcome.summary, outcome.out, outcome.failed)
        return outcome.exit_code

    raise typer.Exit(_run(work))


def main(argv: list[str] | None = None) -> Any:
    """Console entry point. A bad flag or argument is one line on stderr and exit code 2."""
    try:  # typer >= 0.26 carries its own copy of click
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions as cx  # type: ignore[no-redef]

    args = argv if argv is not None else sys.argv[1:]
    try:
        code = app(args=args, prog_name="seewhy", standalone_mode=False)
    except cx.NoArgsIsHelpError as exc:  # `seewhy` alone: the overview
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        code = 0
    except cx.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "seewhy"
        message = " ".join(exc.format_message().split()).rstrip(".")
        typer.echo(f"seewhy: error: {message}; see `{where} --help`", err=True)
        code = 2
    except typer.Abort:
        typer.echo("seewhy: interrupted", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
