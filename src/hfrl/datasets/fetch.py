"""Fetch the Open Bandit Dataset's small sample from the Open Bandit Pipeline source distribution.

``fetch_obd(out)`` runs ``pip download obp==0.5.7 --no-deps --no-binary :all:
--ignore-requires-python`` into a temporary directory (this installs nothing; the only network use),
copies only the ``obd/`` CSV files out of the tarball into ``out/{policy}/{campaign}/``, and verifies
them: 10,000 rows per log file, the OBD columns, one ``item_context.csv`` row per item. Member
names are never used as paths: a file is written only when its last four name parts are
``obd/<policy>/<campaign>/<campaign>.csv`` or ``.../item_context.csv`` with a known policy and
campaign, so a crafted tarball cannot write outside ``out``; links and oversized members are
refused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from os import PathLike
from pathlib import Path, PurePosixPath

from hfrl.datasets.obd import (
    BEHAVIOR_POLICIES,
    CAMPAIGNS,
    ITEM_FEATURE_COLUMNS,
    LOG_COLUMNS,
    _connect,
    _header,
    _literal,
    affinity_columns,
)
from hfrl.errors import LogValidationError

__all__ = ["OBD_SAMPLE_ROWS", "OBP_VERSION", "extract_obd", "fetch_obd", "verify_obd"]

OBP_VERSION = "0.5.7"
#: Rows in each log file of the small sample.
OBD_SAMPLE_ROWS = 10_000
_MAX_MEMBER_BYTES = 200 * 2**20  # the sample's largest file is about 5 MB


def _target(name: str) -> tuple[str, str, str] | None:
    """(policy, campaign, file name) when a tar member is one of the dataset's CSVs, else None."""
    parts = PurePosixPath(name).parts
    if len(parts) < 4 or parts[-4] != "obd":
        return None
    policy, campaign, file_name = parts[-3:]
    if policy not in BEHAVIOR_POLICIES or campaign not in CAMPAIGNS:
        return None
    if file_name not in (f"{campaign}.csv", "item_context.csv"):
        return None
    return policy, campaign, file_name


def extract_obd(sdist: str | PathLike[str], out: str | PathLike[str]) -> list[Path]:
    """Copy the ``obd/`` CSV files of an Open Bandit Pipeline sdist into ``out``.

    Parameters
    ----------
    sdist : str or PathLike
        The ``obp-<version>.tar.gz`` source distribution.
    out : str or PathLike
        The directory to create the dataset layout in (``out/{policy}/{campaign}/...``).

    Returns
    -------
    list of Path
        The files written, sorted.

    Raises
    ------
    LogValidationError
        When the file is not a readable tarball, holds no OBD CSV, or a matching member is a link,
        a directory, has an absolute or ``..`` name, or is larger than 200 MB.

    Examples
    --------
    >>> import io, pathlib, tarfile, tempfile
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> with tarfile.open(tmp / "obp.tar.gz", "w:gz") as tar:
    ...     data = b"item_id\\n0\\n"
    ...     info = tarfile.TarInfo("obp-0.5.7/obp/dataset/obd/random/all/item_context.csv")
    ...     info.size = len(data)
    ...     tar.addfile(info, io.BytesIO(data))
    >>> [p.relative_to(tmp / "out").as_posix() for p in extract_obd(tmp / "obp.tar.gz", tmp / "out")]
    ['random/all/item_context.csv']
    """
    source = str(sdist)
    root = Path(out)
    written: set[Path] = set()  # a name repeated in the archive: its last copy wins, as tar does
    try:
        archive = tarfile.open(source, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise LogValidationError(f"not a readable tar archive: {exc}", source=source) from exc
    with archive:
        for member in archive:
            target = _target(member.name)
            if target is None:
                continue
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise LogValidationError(f"refusing member {member.name!r}: unsafe path", source=source)
            if not member.isreg():
                raise LogValidationError(
                    f"refusing member {member.name!r}: expected a regular file, got a link or directory",
                    source=source,
                )
            if member.size > _MAX_MEMBER_BYTES:
                raise LogValidationError(
                    f"refusing member {member.name!r}: {member.size} bytes is larger than the "
                    f"{_MAX_MEMBER_BYTES} expected at most",
                    source=source,
                )
            destination = root.joinpath(*target)
            destination.parent.mkdir(parents=True, exist_ok=True)
            stream = archive.extractfile(member)
            if stream is None:  # pragma: no cover - isreg() members always have data
                continue
            partial = destination.with_name(destination.name + ".part")
            with stream, open(partial, "wb") as sink:
                shutil.copyfileobj(stream, sink)
            partial.replace(destination)
            written.add(destination)
    if not written:
        raise LogValidationError(
            "no Open Bandit Dataset CSV (obd/<policy>/<campaign>/*.csv) in the archive", source=source
        )
    return sorted(written)


def verify_obd(
    path: str | PathLike[str], *, expected_rows: int | None = OBD_SAMPLE_ROWS
) -> dict[str, int]:
    """Check an OBD directory: files present, columns, row counts.

    Every ``{policy}/{campaign}/{campaign}.csv`` found must have the log columns, one
    ``user-item_affinity_i`` per item of its ``item_context.csv`` (which must exist and have
    ``item_id`` and ``item_feature_0..3``) and, unless ``expected_rows`` is None, exactly
    ``expected_rows`` rows. Campaign ``all`` must be present for both policies.

    Parameters
    ----------
    path : str or PathLike
        The dataset's root directory.
    expected_rows : int or None, default 10,000
        Rows every log file must have; None (e.g. for the full release) checks no count.

    Returns
    -------
    dict
        Relative file path -> number of data rows.

    Raises
    ------
    LogValidationError
        Naming the file and what differs.

    Examples
    --------
    >>> verify_obd("no/such/dir")
    Traceback (most recent call last):
    ...
    hfrl.errors.LogValidationError: no/such/dir/random/all/all.csv: missing file: ...
    """
    root = Path(path)
    for policy in BEHAVIOR_POLICIES:
        required = root / policy / "all" / "all.csv"
        if not required.is_file():
            raise LogValidationError(
                "missing file: the dataset needs campaign 'all' for both logging policies",
                source=str(required),
            )
    counts: dict[str, int] = {}
    connection = _connect()
    try:
        for policy in BEHAVIOR_POLICIES:
            for campaign in CAMPAIGNS:
                log_file = root / policy / campaign / f"{campaign}.csv"
                if not log_file.is_file():
                    continue
                item_file = log_file.with_name("item_context.csv")
                if not item_file.is_file():
                    raise LogValidationError("missing file next to the logs", source=str(item_file))
                item_header = _header(connection, item_file)
                _require_columns(["item_id", *ITEM_FEATURE_COLUMNS], item_header, item_file)
                n_items = _count(connection, item_file)
                _require_columns([*LOG_COLUMNS, *affinity_columns(n_items)], _header(connection, log_file),
                                 log_file)
                n_rows = _count(connection, log_file)
                if expected_rows is not None and n_rows != expected_rows:
                    raise LogValidationError(
                        f"expected {expected_rows} rows, found {n_rows}: the file is truncated or not "
                        "the small sample", count=n_rows, source=str(log_file),
                    )
                counts[log_file.relative_to(root).as_posix()] = n_rows
                counts[item_file.relative_to(root).as_posix()] = n_items
    finally:
        connection.close()
    return counts


def _require_columns(columns: list[str], present: list[str], file: Path) -> None:
    missing = [c for c in columns if c not in present]
    if missing:
        raise LogValidationError(
            f"missing column(s) {missing[:5]}{' ...' if len(missing) > 5 else ''} "
            f"({len(missing)} of the {len(columns)} expected)",
            column=missing[0],
            source=str(file),
        )


def _count(connection: object, file: Path) -> int:
    import duckdb

    try:
        return int(
            connection.execute(  # type: ignore[attr-defined]
                f"SELECT count(*) FROM read_csv({_literal(str(file))}, header = true)"
            ).fetchone()[0]
        )
    except duckdb.Error as exc:
        raise LogValidationError(f"cannot read the file: {exc}", source=str(file)) from exc


def _pip_download(version: str, directory: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", f"obp=={version}", "--no-deps",
        "--no-binary", ":all:", "--ignore-requires-python", "-d", str(directory),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    found = sorted(directory.glob(f"obp-{version}.tar.gz"))
    if result.returncode != 0 or not found:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise RuntimeError(
            f"`{' '.join(command)}` failed (exit {result.returncode}):\n{tail}\n"
            "Download obp-0.5.7.tar.gz from the Python package index by other means and pass it "
            "with --sdist FILE."
        )
    return found[0]


def fetch_obd(
    out: str | PathLike[str],
    *,
    sdist: str | PathLike[str] | None = None,
    version: str = OBP_VERSION,
) -> Path:
    """Download (or take) the Open Bandit Pipeline sdist, extract the OBD sample, verify it.

    Parameters
    ----------
    out : str or PathLike
        Where to put the dataset; it gets ``random/`` and ``bts/`` with campaigns ``all``, ``men``
        and ``women``, and a ``SOURCE.txt`` saying where the files came from.
    sdist : str or PathLike, optional
        An already downloaded ``obp-<version>.tar.gz``; without it ``pip download`` fetches one
        into a temporary directory (no package is installed).
    version : str
        The Open Bandit Pipeline release to take the sample from.

    Returns
    -------
    Path
        ``out``, ready for ``load_obd(out, ...)``.

    Raises
    ------
    RuntimeError
        When ``pip download`` fails (the message has pip's last lines).
    LogValidationError
        When the archive or the extracted files are not the expected dataset.

    Examples
    --------
    >>> fetch_obd("unused", sdist="no-such-file.tar.gz")
    Traceback (most recent call last):
    ...
    hfrl.errors.LogValidationError: no-such-file.tar.gz: not a readable tar archive: ...
    """
    root = Path(out)
    with tempfile.TemporaryDirectory(prefix="hfrl-obd-") as scratch:
        archive = Path(sdist) if sdist is not None else _pip_download(version, Path(scratch))
        staging = Path(scratch) / "obd"
        extract_obd(archive, staging)
        counts = verify_obd(staging)
        root.mkdir(parents=True, exist_ok=True)
        for relative in counts:
            destination = root / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(staging / relative, destination)
    (root / "SOURCE.txt").write_text(
        f"Open Bandit Dataset, small sample, from the Open Bandit Pipeline {version} source distribution\n"
        "(Apache License 2.0). Y. Saito, S. Aihara, M. Matsutani, Y. Narita, \"Open Bandit Dataset and\n"
        "Pipeline: Towards Realistic and Reproducible Off-Policy Evaluation\", NeurIPS 2021 Datasets and\n"
        "Benchmarks. Files and data rows:\n"
        + "".join(f"  {name}: {rows}\n" for name, rows in counts.items())
    )
    return root
