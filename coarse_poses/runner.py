"""COLMAP over many sequences (parallel, resumable), and what ``tools/make_coarse_poses.py`` does with it.

* :func:`make_coarse_poses`: :func:`coarse_poses.colmap.process_sequence` on
  every sequence under a data folder (NYUv2 layout) or of a given list of
  :class:`coarse_poses.sequences.ImageSequence` (other layouts), skipping the sequences recorded as done
  by an earlier run (see :func:`needs_processing`); writes ``summary.json``.
* :func:`coarse_poses_for_split_lists`: poses for the sequences that split
  lists name (for example the release's lists, which the project ships). The
  lists stay as they are; per list, the items without the poses of both
  neighbours are written to ``<cpose_dir>/missing_<list>.txt`` (training on
  one of them is an error naming it until it is removed from the list).
* :func:`coarse_poses_for_data_path`: poses for every sequence under a data
  folder, and the items that have them (from which the tool writes new lists).

Both run on a cluster as an array job: with ``RunOptions.shard`` a run
processes one :class:`Shard` of the sequences (a deterministic, disjoint
subset) and writes its own ``summary.shard-<k>-of-<n>.json``; a last run with
``RunOptions.merge_shards`` processes nothing, checks that every sequence has
a current record (``<cpose_dir>/<scene>/colmap.json``), merges them into
``summary.json`` and produces the missing-item lists or the items for new
split lists, as an unsharded run does.

Split lists come in parsed (``(line, scene, frame)`` per line, as
``datasets.splits.read_split_items`` reads them): this package depends on
:mod:`utils` only.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Sequence

from tqdm import tqdm

from coarse_poses.colmap import (
    SEQUENCE_LOG_FILE,
    ColmapSettings,
    SequenceResult,
    load_sequence_record,
    process_sequence,
)
from coarse_poses.pose_files import filter_items_with_coarse_poses, list_pose_items
from coarse_poses.sequences import ImageSequence, find_sequences, read_intrinsics_file
from coarse_poses.summary import SUMMARY_FILE, format_summary_table, write_summary
from utils import GasMonoError, atomic_write_text

logger = logging.getLogger(__name__)

SplitLists = dict[Path, list[tuple[str, str, int]]]
"""Split list path -> ``(line, scene, frame)`` of each of its lines, in order."""

SequenceSource = str | os.PathLike | Sequence[ImageSequence]
"""A data folder in the NYUv2 layout, or the sequences themselves."""


def resolve_sequences(source: SequenceSource) -> list[ImageSequence]:
    """The sequences of a source (a folder: :func:`coarse_poses.sequences.find_sequences`)."""
    if isinstance(source, (str, os.PathLike)):
        return find_sequences(source)
    if not source:
        raise GasMonoError("no sequences to process")
    return list(source)


def describe_source(source: SequenceSource) -> str:
    """A folder as it is; a list of sequences by their count and first folder."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"{len(source)} sequence(s) from {source[0].image_dir}" if source else "no sequences"


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (from 0) of ``count`` disjoint sets of sequences: the
    sequences whose position in the name-sorted list is ``index`` modulo
    ``count`` (so the shards differ in size by one sequence at most)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"K/N"`` -> the K-th of N shards (``0 <= K < N``).

        Raises:
            GasMonoError: a malformed text or ``K`` out of range.
        """
        index, slash, count = text.partition("/")
        if not (slash and index.strip().isdigit() and count.strip().isdigit()) or int(index) >= int(count):
            raise GasMonoError(f"--shard must be K/N with 0 <= K < N (e.g. 0/8), got {text!r}")
        return cls(int(index), int(count))

    def select(self, scenes: Collection[str]) -> list[str]:
        """This shard's scenes, sorted."""
        return sorted(scenes)[self.index :: self.count]

    @property
    def summary_name(self) -> str:
        return f"summary.shard-{self.index}-of-{self.count}.json"


def needs_processing(
    sequence: ImageSequence | Path, cpose_dir: Path, overwrite: bool, retry_failed: bool
) -> tuple[bool, SequenceResult | None]:
    """Whether a sequence must be (re)processed, and its previous record if not.

    A sequence is redone when ``overwrite`` is set, when it has no readable
    record, when its number of frames changed since, or when it failed and
    ``retry_failed`` is set.
    """
    if not isinstance(sequence, ImageSequence):
        sequence = ImageSequence(Path(sequence).name, Path(sequence))
    if overwrite:
        return True, None
    record = load_sequence_record(cpose_dir, sequence.scene)
    if record is None or record.frames != len(sequence.frames()):
        return True, None
    if retry_failed and record.status != "ok":
        return True, None
    return False, record


def make_coarse_poses(
    data_path: SequenceSource,
    cpose_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    settings: ColmapSettings,
    jobs: int = 1,
    overwrite: bool = False,
    retry_failed: bool = False,
    keep_work: bool = False,
    progress: bool = True,
    scenes: Collection[str] | None = None,
    summary_name: str = SUMMARY_FILE,
) -> list[SequenceResult]:
    """Run :func:`process_sequence` on every sequence of ``data_path`` (a
    folder in the NYUv2 layout, or a list of sequences; only those named in
    ``scenes`` when given).

    With ``jobs > 1`` sequences run in that many worker processes (``spawn``:
    a calling script needs the ``if __name__ == "__main__":`` guard), each with
    ``settings.num_threads`` COLMAP threads; with ``jobs == 1`` they run in this
    process, one after the other. Sequences with a record in
    ``cpose_dir`` are skipped unless ``overwrite`` (or ``retry_failed`` for
    failed ones). Writes ``<cpose_dir>/<summary_name>``.

    Returns:
        one result per sequence, sorted by scene name (skipped ones from their record).
    """
    sequences = resolve_sequences(data_path)
    if scenes is not None:
        sequences = [sequence for sequence in sequences if sequence.scene in scenes]
    for sequence in sequences:
        if sequence.intrinsics is None and sequence.intrinsics_file.is_file():
            read_intrinsics_file(sequence.intrinsics_file)
    cpose_dir = Path(cpose_dir)
    cpose_dir.mkdir(parents=True, exist_ok=True)

    results: dict[str, SequenceResult] = {}
    todo = []
    for sequence in sequences:
        redo, record = needs_processing(sequence, cpose_dir, overwrite, retry_failed)
        if redo:
            todo.append(sequence)
        else:
            results[sequence.scene] = record
    if results:
        logger.info("skipping %d sequence(s) already done (use --overwrite to redo them)", len(results))

    if todo:
        bar = tqdm(total=len(todo), desc="sequences", unit="seq", disable=not progress)
        if jobs == 1:
            for sequence in todo:
                results[sequence.scene] = process_sequence(sequence, cpose_dir, work_dir, settings, keep_work)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context) as pool:
                futures = {
                    pool.submit(process_sequence, sequence, cpose_dir, work_dir, settings, keep_work): sequence
                    for sequence in todo
                }
                for future in as_completed(futures):
                    sequence = futures[future]
                    try:
                        results[sequence.scene] = future.result()
                    except BrokenProcessPool as error:
                        results[sequence.scene] = SequenceResult(
                            scene=sequence.scene,
                            frames=len(sequence.frames()),
                            reason=f"worker process died ({error}); it is retried on the next run",
                        )
                    bar.update()
        bar.close()

    ordered = [results[sequence.scene] for sequence in sequences]
    write_summary(ordered, cpose_dir, summary_name)
    return ordered


def merge_shard_records(data_path: SequenceSource, cpose_dir: Path, scenes: Collection[str]) -> list[SequenceResult]:
    """The records of ``scenes`` written by the shards, merged into ``<cpose_dir>/summary.json``.

    Raises:
        GasMonoError: a sequence without a current record (never processed, or
            its frames changed since), naming one and the count.
    """
    results, missing = [], []
    for sequence in resolve_sequences(data_path):
        if sequence.scene in scenes:
            redo, record = needs_processing(sequence, cpose_dir, overwrite=False, retry_failed=False)
            if redo:
                missing.append(sequence.scene)
            else:
                results.append(record)
    if missing:
        raise GasMonoError(f"{len(missing)} of {len(scenes)} sequence(s) have no current record in {cpose_dir} "
                           f"(e.g. {missing[0]}): run the shards that hold them, then merge again")
    write_summary(results, cpose_dir)
    return results


@dataclass
class ListCoverage:
    """How many items of one split list have coarse poses; the others are listed in ``missing_path``."""

    list_path: Path
    listed: int
    missing: list[str]
    missing_path: Path


@dataclass
class CoarsePoseReport:
    """What one run over many sequences did (see :func:`format_report`).

    ``items`` holds the ``(scene, frame)`` items with coarse poses (data-path
    mode); ``num_listed_scenes``, ``absent_scenes`` and ``coverage`` describe the
    split lists (split-list mode). A run of one ``shard`` has neither: they
    come with the merge.
    """

    data_path: str
    cpose_dir: Path
    results: list[SequenceResult]
    items: list[tuple[str, int]] = field(default_factory=list)
    num_listed_scenes: int = 0
    absent_scenes: list[str] = field(default_factory=list)
    coverage: list[ListCoverage] = field(default_factory=list)
    shard: Shard | None = None


def listed_scenes(lists: SplitLists, data_path: SequenceSource) -> tuple[list[str], list[str]]:
    """The scenes the lists name, split into those that are sequences of ``data_path`` and the others.

    Raises:
        GasMonoError: when none of them is there.
    """
    named = sorted({scene for items in lists.values() for _, scene, _ in items})
    on_disk = {sequence.scene for sequence in resolve_sequences(data_path)}
    scenes = [scene for scene in named if scene in on_disk]
    absent = [scene for scene in named if scene not in on_disk]
    if not scenes:
        raise GasMonoError(f"none of the {len(named)} sequences named by the split lists is under "
                           f"{describe_source(data_path)} (e.g. {named[0]})")
    return scenes, absent


def write_missing_lists(lists: SplitLists, cpose_dir: Path) -> list[ListCoverage]:
    """Per list, the items with a coarse-pose file; the lines of the others go to
    ``<cpose_dir>/missing_<list>.txt``."""
    coverage = []
    for list_path, items in lists.items():
        with_poses = set(filter_items_with_coarse_poses([(scene, frame) for _, scene, frame in items], cpose_dir))
        missing = [line for line, scene, frame in items if (scene, frame) not in with_poses]
        missing_path = cpose_dir / f"missing_{list_path.stem}.txt"
        atomic_write_text("".join(line + "\n" for line in missing), missing_path)
        coverage.append(ListCoverage(list_path, len(items), missing, missing_path))
    return coverage


@dataclass
class RunOptions:
    """How :func:`make_coarse_poses` runs (see there); ``work_dir`` ``None`` is
    a temporary folder; ``shard`` runs one shard, ``merge_shards`` merges the
    shards' records (see the module docstring)."""

    jobs: int = 1
    overwrite: bool = False
    retry_failed: bool = False
    work_dir: Path | None = None
    keep_work: bool = False
    progress: bool = True
    shard: Shard | None = None
    merge_shards: bool = False


def _run_sequences(data_path: SequenceSource, cpose_dir: Path, settings: ColmapSettings,
                   scenes: Collection[str] | None, options: RunOptions) -> list[SequenceResult]:
    """:func:`make_coarse_poses` with ``options`` (on the shard's sequences, or
    :func:`merge_shard_records`), in a temporary work folder unless one is given."""
    if scenes is None:
        scenes = [sequence.scene for sequence in resolve_sequences(data_path)]
    if options.merge_shards:
        return merge_shard_records(data_path, cpose_dir, scenes)
    summary_name = SUMMARY_FILE
    if options.shard is not None:
        scenes, summary_name = options.shard.select(scenes), options.shard.summary_name
        logger.info("shard %d of %d: %d sequence(s)", options.shard.index, options.shard.count, len(scenes))
    logger.info("%d sequence(s) of %s; %d job(s) x %d thread(s)", len(scenes), describe_source(data_path),
                options.jobs, settings.threads)
    with tempfile.TemporaryDirectory(prefix="gasmono_colmap_") as temporary:
        return make_coarse_poses(data_path, cpose_dir, options.work_dir or temporary, settings, jobs=options.jobs,
                                 overwrite=options.overwrite, retry_failed=options.retry_failed,
                                 keep_work=options.keep_work, progress=options.progress, scenes=scenes,
                                 summary_name=summary_name)


def coarse_poses_for_split_lists(
    lists: SplitLists,
    data_path: SequenceSource,
    cpose_dir: str | os.PathLike,
    settings: ColmapSettings,
    options: RunOptions | None = None,
) -> CoarsePoseReport:
    """Coarse poses for the sequences the split lists name, and each list's coverage
    (the items without poses written to ``<cpose_dir>/missing_<list>.txt``).

    Raises:
        GasMonoError: when no listed sequence is under ``data_path``.
    """
    scenes, absent = listed_scenes(lists, data_path)
    cpose_dir, options = Path(cpose_dir), options or RunOptions()
    results = _run_sequences(data_path, cpose_dir, settings, scenes, options)
    report = CoarsePoseReport(describe_source(data_path), cpose_dir, results,
                              num_listed_scenes=len(scenes) + len(absent), absent_scenes=absent, shard=options.shard)
    if options.shard is None:
        report.coverage = write_missing_lists(lists, cpose_dir)
    return report


def coarse_poses_for_data_path(
    data_path: SequenceSource,
    cpose_dir: str | os.PathLike,
    settings: ColmapSettings,
    options: RunOptions | None = None,
) -> CoarsePoseReport:
    """Coarse poses for every sequence under ``data_path``, and the items that
    have them (none for a shard: they come with the merge)."""
    cpose_dir, options = Path(cpose_dir), options or RunOptions()
    results = _run_sequences(data_path, cpose_dir, settings, None, options)
    report = CoarsePoseReport(describe_source(data_path), cpose_dir, results, shard=options.shard)
    if options.shard is None:
        report.items = list_pose_items(cpose_dir, [result.scene for result in results])
    return report


def format_report(report: CoarsePoseReport) -> str:
    """The summary table, where the summary and logs are, and each split list's coverage."""
    lines = []
    if report.absent_scenes:
        lines.append(f"{len(report.absent_scenes)} of {report.num_listed_scenes} listed sequence(s) are not under "
                     f"{report.data_path} (e.g. {report.absent_scenes[0]}); their items get no poses")
    lines.append(format_summary_table(report.results))
    for result in report.results:
        if result.estimated_focal_length is not None:
            lines.append(f"{result.scene}: focal length estimated by COLMAP, {result.estimated_focal_length:.1f} px "
                         "(written to its cam.txt)")
    summary = report.cpose_dir / (report.shard.summary_name if report.shard else SUMMARY_FILE)
    lines.append(f"summary: {summary} (COLMAP logs: {report.cpose_dir}/<scene>/{SEQUENCE_LOG_FILE})")
    if report.shard is not None:
        lines.append(f"shard {report.shard.index} of {report.shard.count} done; when every shard is, run the same "
                     "command with --merge_shards instead of --shard (it writes summary.json and the lists)")
    for entry in report.coverage:
        lines.append(f"{entry.list_path}: {entry.listed - len(entry.missing)} of {entry.listed} listed items have "
                     f"the poses of both neighbours; {len(entry.missing)} missing, listed in {entry.missing_path}")
    return "\n".join(lines)
