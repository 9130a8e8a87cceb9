"""``entroad ingest`` and ``entroad data ...``: datasets, versions, samples, DVC remote."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from entroad.commands._common import ParamsOpt, SetOpt, params_from_cli
from entroad.config import DatasetSpec, Params, apply_overrides
from entroad.errors import ConfigError, DatasetError

console = Console()
data_app = typer.Typer(
    name="data", help="Datasets: list, status, versions, bundled samples, AnomalyCLIP meta.json, DVC remote.",
    no_args_is_help=True,
)


def _quiet_logs() -> None:
    # --json output must stay parseable: the shared log handler prints to stdout (what the
    # warnings said goes into the JSON instead).
    logging.getLogger("entroad").setLevel(logging.ERROR)


def _column(t: Table, name: str) -> None:
    """Versions and names can be long: they wrap (never cut with an ellipsis) while the short
    columns keep their words whole, so a table stays readable in an 80-column terminal."""
    if name in ("version", "dataset", "name"):
        t.add_column(name, overflow="fold", min_width=8)
    else:
        t.add_column(name, no_wrap=True, justify="right" if name in _NUMERIC else "left")


_NUMERIC = {"images", "anomalous", "masks", "skipped", "seconds"}


def _result_table(results: list[Any]) -> Table:
    t = Table(title="ingest", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("dataset", "status", "images", "anomalous", "masks", "skipped", "version", "seconds"):
        _column(t, col)
    for r in results:
        c = r.counts
        t.add_row(r.name, "unchanged" if r.skipped else "ingested", str(c.get("images", "?")),
                  str(c.get("anomalous", "?")), str(c.get("with_mask", "?")), str(c.get("skipped", 0)),
                  r.version, f"{r.seconds:.1f}")
    return t


def ingest_cmd(
    names: list[str] = typer.Argument(None, help="Datasets to ingest (default: every dataset in params.yaml)."),
    force: bool = typer.Option(False, "--force", "-f", help="Re-ingest even if the input did not change."),
    dvc: bool = typer.Option(None, "--dvc/--no-dvc", help="Run through `dvc repro` (default: when the repo has the stage)."),
    fmt: str = typer.Option(None, "--format", help="Ad-hoc dataset not in params.yaml: its layout (see `entroad data formats`)."),
    source: Path = typer.Option(None, "--source", help="Ad-hoc dataset: the raw folder."),
    domain: str = typer.Option(None, "--domain", help="Ad-hoc dataset: industrial | medical (default: the format's)."),
    option: list[str] = typer.Option(None, "--option", "-o", help="Reader option key=value (repeatable), e.g. -o slices=middle."),
    normal: str = typer.Option(None, "--normal", help="folder format: name of the normal-image folder (default good)."),
    anomalous: list[str] = typer.Option(None, "--anomalous", help="folder format: anomalous folder name (repeatable; default: all others)."),
    masks: str = typer.Option(None, "--masks", help="folder format: mask folder name (default masks)."),
    mask_suffix: str = typer.Option(None, "--mask-suffix", help="folder format: suffix of mask file stems (default _mask)."),
    class_name: str = typer.Option(None, "--class-name", help="Class name when the layout has none."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    dask: str = typer.Option(None, "--dask", help="DICOM: ingest series on Dask workers: local, local:N or a scheduler "
                             "address (default: orchestration.dask_address, else worker processes here). Same bytes and version."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Turn raw data into a processed, versioned dataset (manifest + 8-bit PNGs + audit).

    Unchanged input is detected and skipped (same version, no work). Inside a DVC repository the configured datasets go through `dvc repro ingest@<name>`, so dvc.lock records the version; the version printed is the DVC hash (`<md5>.dir`) or `content:<sha256>`. Bad files are skipped and counted in audit.json; DICOM is always de-identified.

    Examples: `entroad ingest` (every dataset in params.yaml) · `entroad ingest sample-ct-mr --force` · `entroad ingest my-line --format folder --source /data/line7 --normal ok --anomalous scratch` · `entroad ingest scans --format dicom --source /data/export -o labels=labels.csv -o display.CT=subdural`
    """
    from entroad.data.ingest import ingest_datasets, ingest_spec, report_skips
    from entroad.data.skips import skip_summary
    from entroad.data.versioning import data_root, dataset_dir

    if json_out:
        _quiet_logs()
    p = params_from_cli(params, overrides)
    dask = dask or p.orchestration.dask_address
    extra = apply_overrides({}, option or [])  # -o display.CT=subdural -> nested, like --set
    for key, val in (("normal", normal), ("anomalous", anomalous or None), ("masks", masks),
                     ("mask_suffix", mask_suffix), ("class_name", class_name)):
        if val is not None:
            extra[key] = val
    results = []
    if fmt or source:
        if not (fmt and source and names and len(names) == 1):
            raise ConfigError("an ad-hoc dataset needs exactly one NAME plus --format and --source")
        spec = DatasetSpec(name=names[0], format=fmt, source=str(source), domain=domain, options=extra)
        results.append(ingest_spec(spec, dataset_dir(p, spec.name), data_root(p), force=force, dask=dask))
        report_skips(results, configured=False)
    else:
        if extra:
            raise ConfigError("reader options on the command line apply to ad-hoc datasets (--format/--source); "
                              "for configured ones use --set data.datasets.<name>.options.<key>=<value>")
        todo = names or [d.name for d in p.data.datasets]
        if not todo:
            raise ConfigError("no datasets configured in params.yaml (data.datasets) and none named")
        for name in todo:
            p.data.get(name)  # unknown names fail before any work
        results = ingest_datasets(p, todo, force=force, use_dvc=dvc, dask=dask)
    if json_out:
        configured = not (fmt or source)
        typer.echo(json.dumps([{"name": r.name, "path": str(r.path), "version": r.version, "skipped": r.skipped,
                                "counts": r.counts, "seconds": round(r.seconds, 3),
                                "skipped_by_reason": r.audit.get("skipped_by_reason", {}),
                                "notes": skip_summary(r.name, r.audit, r.path, configured)} for r in results], indent=2))
    else:
        console.print(_result_table(results))


@data_app.command("samples")
def samples_cmd(
    force: bool = typer.Option(False, "--force", help="Rewrite existing raw sample folders (same bytes)."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Create the raw folders of the bundled sample datasets (those with `generate` in params.yaml)."""
    from entroad.data.ingest import ensure_samples

    p = params_from_cli(params, overrides)
    made = ensure_samples(p, force=force)
    gen = [d.name for d in p.data.datasets if d.generate]
    for name in gen:
        console.print(f"{name}: {'written' if name in made else 'already present'}")
    if not gen:
        console.print("no dataset in params.yaml has a `generate` recipe")


def _rows(p: Params) -> list[dict[str, Any]]:
    from entroad.data.manifest import DATASET_FILE
    from entroad.data.versioning import data_version, dataset_dir, processed_root, recorded_dvc_hash

    names = [d.name for d in p.data.datasets]
    processed = processed_root(p)
    if processed.is_dir():
        names += sorted(d.name for d in processed.iterdir() if (d / DATASET_FILE).is_file() and d.name not in names)
    rows = []
    for name in names:
        folder = dataset_dir(p, name)
        spec = next((d for d in p.data.datasets if d.name == name), None)
        row: dict[str, Any] = {"name": name, "format": spec.format if spec else "?", "configured": spec is not None,
                               "path": str(folder), "ingested": (folder / DATASET_FILE).is_file()}
        if row["ingested"]:
            meta = json.loads((folder / DATASET_FILE).read_text())
            row.update(domain=meta.get("domain"), images=meta.get("counts", {}).get("images"),
                       anomalous=meta.get("counts", {}).get("anomalous"))
            try:
                row["version"] = data_version(folder)
            except DatasetError as e:
                row["version"] = f"invalid ({e})"
            row["dvc_tracked"] = recorded_dvc_hash(folder) is not None
        rows.append(row)
    return rows


@data_app.command("list")
def list_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Configured and processed datasets with their data versions."""
    if json_out:
        _quiet_logs()
    rows = _rows(params_from_cli(params, overrides))
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    t = Table(title="datasets", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("name", "format", "domain", "images", "anomalous", "version", "dvc"):
        _column(t, col)
    for r in rows:
        t.add_row(r["name"], r["format"], str(r.get("domain", "-")), str(r.get("images", "-")),
                  str(r.get("anomalous", "-")), r.get("version", "not ingested"),
                  "tracked" if r.get("dvc_tracked") else "-")
    console.print(t)


@data_app.command("status")
def status_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Versions, whether DVC sees changes to re-ingest, and whether the data is pushed to the remote."""
    from entroad.data import dvc_ops
    from entroad.data.versioning import find_dvc_root

    p = params_from_cli(params, overrides)
    if json_out:
        _quiet_logs()
    rows = _rows(p)
    repo = find_dvc_root(Path.cwd())
    if repo is not None and dvc_ops.has_ingest_stage(repo):
        stages = dvc_ops.stage_status(repo)
        remote = dvc_ops.default_remote(repo)
        for r in rows:
            st = dvc_ops.stage_name(r["name"])
            r["stage"] = "changed" if st in stages else "up to date"
            if r.get("dvc_tracked") and remote:
                cloud = dvc_ops.cloud_status(repo, [st])
                r["pushed"] = None if cloud is None else not cloud
            else:
                r["pushed"] = None if not remote else False
        for r in rows:
            r["remote"] = remote
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    t = Table(title="data status", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("name", "version", "dvc stage", "pushed"):
        _column(t, col)
    for r in rows:
        pushed = r.get("pushed")
        t.add_row(r["name"], r.get("version", "not ingested"), r.get("stage", "no DVC"),
                  "yes" if pushed else "no" if pushed is False else "-")
    console.print(t)
    for line in _status_hints(rows):
        console.print(line, markup=False, highlight=False)


def _status_hints(rows: list[dict[str, Any]]) -> list[str]:
    """The commands that fix what the status table shows."""
    out = []
    missing = [r["name"] for r in rows if not r.get("ingested") and r.get("configured")]
    if missing:
        out.append(f"not ingested: {', '.join(missing)} - run `entroad ingest {' '.join(missing)}`")
    changed = [r["name"] for r in rows if r.get("stage") == "changed" and r.get("ingested")]
    if changed:
        out.append(f"changed since the last ingest: {', '.join(changed)} - run `entroad ingest {' '.join(changed)}`")
    unpushed = [r["name"] for r in rows if r.get("pushed") is False and r.get("dvc_tracked")]
    remote = next((r.get("remote") for r in rows if r.get("remote")), None)
    if unpushed:
        out.append(f"pushed: no for {', '.join(unpushed)} - run `entroad data push {' '.join(unpushed)}` "
                   f"(= `dvc push` to the remote {remote!r})")
    tracked = [r["name"] for r in rows if r.get("dvc_tracked")]
    if tracked and remote is None and any("stage" in r for r in rows):
        out.append("no DVC remote yet: `entroad data push` sets up the default local one and pushes; "
                   "`entroad data remote URL` sets a shared one (s3://, ssh://, /mnt/...)")
    return out


@data_app.command("fingerprint")
def fingerprint_cmd(
    name: str = typer.Argument(..., help="Configured dataset name."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Write the input fingerprint of a dataset (the dvc.yaml `fingerprint@<name>` stage runs this)."""
    from entroad.data.ingest import write_fingerprint

    typer.echo(str(write_fingerprint(params_from_cli(params, overrides), name)))


def _reflow(doc: str) -> str:
    """A module docstring for the terminal: paragraphs joined (rich wraps them), indented
    layout blocks kept as they are, reST marks dropped."""
    out = []
    for para in doc.replace("``", "").strip().split("\n\n"):
        lines = [ln for ln in para.splitlines() if ln.strip() != "::"]
        if not lines:
            continue
        out.append("\n".join(lines) if lines[0].startswith(" ") else " ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


@data_app.command("formats")
def formats_cmd(
    name: str = typer.Argument(None, help="Show this format only: its layout and every option with its default."),
) -> None:
    """The raw layouts `ingest` understands and their options (`entroad data formats folder`: one of them)."""
    from entroad.data.formats import FORMATS, get_format

    if name is not None:
        f = get_format(name)
        console.print(f"[bold]{f.name}[/] ({f.domain})\n{f.description}", highlight=False, markup=True)
        doc = sys.modules[f.scan.__module__].__doc__ if f.scan is not None else None
        if doc:
            console.print(_reflow(doc), markup=False, highlight=False)
        t = Table(title=f"options of {f.name}")
        t.add_column("option")
        t.add_column("default", overflow="fold")
        for k, v in f.option_defaults().items():
            t.add_row(k, json.dumps(v))
        console.print(t)
        console.print(f"set them under data.datasets.<name>.options in params.yaml (format: {f.name}), "
                      "or with -o KEY=VALUE on an ad-hoc `entroad ingest`", markup=False, highlight=False)
        return
    t = Table(title="formats (details: entroad data formats NAME)")
    for col in ("format", "domain", "layout", "options"):
        t.add_column(col, overflow="fold")
    for f in FORMATS.values():
        t.add_row(f.name, f.domain, f.description, ", ".join(f"{k}={v}" for k, v in f.option_defaults().items()))
    console.print(t)


@data_app.command("export-meta")
def export_meta_cmd(
    name: str = typer.Argument(..., help="Processed dataset name."),
    out: Path = typer.Option(None, "--out", help="Output file (default: <dataset>/meta.json, ignored by DVC)."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Write an AnomalyCLIP-style meta.json for a processed dataset."""
    from entroad.data.anomalyclip_meta import export_meta
    from entroad.data.lookup import processed_dir
    from entroad.data.manifest import ProcessedDataset

    p = params_from_cli(params, overrides)
    path = export_meta(ProcessedDataset.load(processed_dir(p, name)), out)
    console.print(f"wrote {path}")


@data_app.command("import-meta")
def import_meta_cmd(
    source: Path = typer.Argument(..., help="Folder holding an AnomalyCLIP meta.json (paths relative to it)."),
    name: str = typer.Option(..., "--name", help="Name of the processed dataset to create."),
    domain: str = typer.Option("industrial", "--domain", help="industrial | medical."),
    force: bool = typer.Option(False, "--force", "-f", help="Re-ingest even if unchanged."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Ingest prepared data described by an AnomalyCLIP meta.json (same as --format anomalyclip)."""
    from entroad.data.ingest import ingest_spec, report_skips
    from entroad.data.versioning import data_root, dataset_dir

    p = params_from_cli(params, overrides)
    spec = DatasetSpec(name=name, format="anomalyclip", source=str(source), domain=domain)
    results = [ingest_spec(spec, dataset_dir(p, name), data_root(p), force=force)]
    report_skips(results, configured=False)
    console.print(_result_table(results))


def _targets(p: Params, names: list[str] | None) -> list[str]:
    from entroad.data import dvc_ops

    return [dvc_ops.stage_name(n) for n in (names or [d.name for d in p.data.datasets])]


def _repo() -> Path:
    from entroad.data.versioning import find_dvc_root
    from entroad.errors import VersioningError

    repo = find_dvc_root(Path.cwd())
    if repo is None:
        raise VersioningError("not inside a DVC repository: run `dvc init` at the repository root")
    return repo


@data_app.command("push")
def push_cmd(
    names: list[str] = typer.Argument(None, help="Datasets (default: all configured)."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Push processed datasets to the DVC remote (the default local one is set up if none)."""
    from entroad.data import dvc_ops

    p = params_from_cli(params, overrides)
    console.print(dvc_ops.push(_repo(), _targets(p, names), p.data.remote) or "nothing to push")


@data_app.command("pull")
def pull_cmd(
    names: list[str] = typer.Argument(None, help="Datasets (default: all configured)."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Fetch processed datasets from the DVC remote into datasets/processed/."""
    from entroad.data import dvc_ops

    p = params_from_cli(params, overrides)
    console.print(dvc_ops.pull(_repo(), _targets(p, names)) or "nothing to pull")


@data_app.command("remote")
def remote_cmd(
    url: str = typer.Argument(None, help="Set the default remote to this URL or absolute path (s3://, ssh://, /mnt/...)."),
    params: Path = ParamsOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Show (or set) the DVC remote; creates the default local remote when none exists."""
    from entroad.data import dvc_ops

    p = params_from_cli(params, overrides)
    repo = _repo()
    name = dvc_ops.ensure_remote(repo, url or p.data.remote)
    proc = dvc_ops.run_dvc(repo, "remote", "list")
    console.print(f"default remote: {name}\n{proc.stdout.strip()}")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_cmd)
    app.add_typer(data_app, name="data")
