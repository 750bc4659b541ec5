"""Video-text retrieval: MSRVTT / MSVD / DiDeMo layouts, PyAV decoding, mean-pooled frame embeddings.

Protocol: ``n_frames`` frames (12; 32 for DiDeMo) at the middles of equal segments of the video; each
frame's embedding L2-normalised and mean-pooled over frames; ``pooling="renormalised"`` (the default) then
L2-normalises the mean, ``pooling="mean"`` keeps it as is, as the paper's code does (a video whose frames
disagree then has a shorter vector and ranks lower for every caption); captions embedded by the
unpruned text tower; text->video and video->text R@1/5/10/50, MedR, MeanR. Videos that cannot be decoded
are skipped, counted and listed (their captions are dropped too).

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import csv
import json
import logging
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ccs_dist.core.errors import UserError
from ccs_dist.evaluate.encode import HeadSetEncoder, embed_images, embed_texts
from ccs_dist.evaluate.retrieval import retrieval_metrics

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".3gp")
DEFAULT_FRAMES = {"msrvtt": 12, "msvd": 12, "didemo": 32}
LAYOUTS = {
    "msrvtt": "DATA/msrvtt/MSRVTT_JSFUSION_test.csv (columns key,vid_key,video_id,sentence) and DATA/msrvtt/videos/[all/]<video_id>.mp4",
    "msvd": "DATA/msvd/raw-captions.pkl (video id -> list of token lists), DATA/msvd/test_list.txt and DATA/msvd/YouTubeClips/<video id>.avi",
    "didemo": "DATA/didemo/test_data.json (list of {video, description, ...}) and DATA/didemo/videos/<video stem>.<mp4|mov|...>",
}
FOLDERS = {"msrvtt": "msrvtt", "msvd": "msvd", "didemo": "didemo"}


@dataclass(frozen=True)
class VideoTask:
    """Videos (id, file) with their captions; ``missing`` lists ids whose file is absent."""

    name: str
    video_ids: tuple[str, ...]
    paths: tuple[Path, ...]
    captions: tuple[tuple[str, ...], ...]
    missing: tuple[str, ...] = ()


def _missing_layout(task: str, root: Path, detail: str) -> UserError:
    return UserError(f"{task}: {detail} under {root}; expected layout {LAYOUTS[task]}")


def _index_videos(folders: Sequence[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
                    found.setdefault(p.stem, p)
    return found


def _read_msrvtt(base: Path) -> tuple[dict[str, list[str]], list[Path]]:
    csv_path = base / "MSRVTT_JSFUSION_test.csv"
    if not csv_path.is_file():
        raise _missing_layout("msrvtt", base.parent, "no MSRVTT_JSFUSION_test.csv")
    caps: dict[str, list[str]] = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"video_id", "sentence"} <= set(reader.fieldnames or ()):
            raise _missing_layout("msrvtt", base.parent, f"{csv_path.name} lacks columns video_id,sentence")
        for row in reader:
            caps.setdefault(row["video_id"].strip(), []).append(row["sentence"].strip())
    return caps, [base / "videos" / "all", base / "videos"]


def _read_msvd(base: Path) -> tuple[dict[str, list[str]], list[Path]]:
    pkl, split = base / "raw-captions.pkl", base / "test_list.txt"
    if not pkl.is_file() or not split.is_file():
        raise _missing_layout("msvd", base.parent, "no raw-captions.pkl or test_list.txt")
    with open(pkl, "rb") as f:
        raw = pickle.load(f)
    if not isinstance(raw, dict):
        raise _missing_layout("msvd", base.parent, "raw-captions.pkl is not a dict")
    caps: dict[str, list[str]] = {}
    for vid in (line.strip() for line in split.read_text(encoding="utf-8").splitlines()):
        if not vid:
            continue
        if vid not in raw:
            raise UserError(f"msvd: video {vid} of test_list.txt has no captions in raw-captions.pkl")
        caps[vid] = [" ".join(c) if isinstance(c, (list, tuple)) else str(c) for c in raw[vid]]
    return caps, [base / "YouTubeClips", base / "videos"]


def _read_didemo(base: Path) -> tuple[dict[str, list[str]], list[Path]]:
    path = base / "test_data.json"
    if not path.is_file():
        raise _missing_layout("didemo", base.parent, "no test_data.json")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        caps: dict[str, list[str]] = {}
        for e in entries:
            caps.setdefault(Path(e["video"]).stem, []).append(str(e["description"]).strip())
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise _missing_layout("didemo", base.parent, f"test_data.json unreadable ({e})") from None
    return caps, [base / "videos"]


_READERS = {"msrvtt": _read_msrvtt, "msvd": _read_msvd, "didemo": _read_didemo}


def load_video_task(name: str, root: Path | str) -> VideoTask:
    """Captions and video files of a retrieval dataset under the data root."""
    if name not in _READERS:
        raise UserError(f"unknown video task {name!r}; known: {', '.join(_READERS)}")
    base = Path(root) / FOLDERS[name]
    if not base.is_dir():
        raise _missing_layout(name, Path(root), f"no {FOLDERS[name]}/ folder")
    caps, folders = _READERS[name](base)
    files = _index_videos(folders)
    ids, paths, captions, missing = [], [], [], []
    for vid, cs in caps.items():
        cs = [c for c in cs if c]
        if not cs:
            continue
        if vid not in files:
            missing.append(vid)
            continue
        ids.append(vid)
        paths.append(files[vid])
        captions.append(tuple(cs))
    if missing:
        log.warning("%s: %d captioned videos have no file (skipped): %s", name, len(missing), ", ".join(missing[:10]))
    if not ids:
        raise _missing_layout(name, Path(root), "no captioned video files found")
    return VideoTask(name, tuple(ids), tuple(paths), tuple(captions), tuple(missing))


# --- decoding -----------------------------------------------------------------------------------------


VIDEO_POOLING = ("renormalised", "mean")


def segment_middles(n_total: int, n_frames: int) -> list[int]:
    """Indices of the middle frames of ``n_frames`` equal segments of ``n_total`` frames."""
    if n_total <= 0:
        return []
    return [min(n_total - 1, int((i + 0.5) * n_total / n_frames)) for i in range(n_frames)]


def read_frames(path: Path, n_frames: int) -> list[Image.Image]:
    """``n_frames`` RGB frames at segment middles (a short video repeats frames). Raises on undecodable files."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        n_total = stream.frames
        if not n_total:
            n_total = sum(1 for packet in container.demux(stream) if packet.size)
    wanted = segment_middles(n_total, n_frames)
    if not wanted:
        raise ValueError("no video frames")
    by_index: dict[int, Image.Image] = {}
    targets = set(wanted)
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in targets:
                by_index[i] = frame.to_image()
            if i >= max(targets):
                break
    if not by_index:
        raise ValueError("no decodable frames")
    # Containers may over-report frame counts: a target past the end takes the nearest earlier decoded one.
    decoded = sorted(by_index)
    return [by_index[max((k for k in decoded if k <= i), default=decoded[0])] for i in wanted]


def evaluate_video_retrieval(
    loaded,
    task: VideoTask,
    head_sets: Sequence[Sequence[str]],
    transform: Callable,
    n_frames: int | None = None,
    caption_mode: str = "first",
    batch_size: int = 64,
    encoder: HeadSetEncoder | None = None,
    ablation: str = "zero",
    pooling: str = "renormalised",
) -> list[dict[str, float]]:
    """Retrieval metrics for each head set, in order; ``videos_skipped`` counts undecodable videos.

    caption_mode: ``first`` (the first caption of each video, the paper's protocol) or ``all`` (every caption
    a query; video->text scores a video's best-ranked caption).
    pooling: ``renormalised`` or ``mean`` (the paper's code: the mean of unit frame embeddings, not rescaled).
    """
    if caption_mode not in ("first", "all"):
        raise UserError(f"caption_mode must be 'first' or 'all', got {caption_mode!r}")
    if pooling not in VIDEO_POOLING:
        raise UserError(f"video pooling must be one of {', '.join(VIDEO_POOLING)}, got {pooling!r}")
    n_frames = n_frames or DEFAULT_FRAMES.get(task.name, 12)
    pooled: list[torch.Tensor] = []  # per video: [S, E]
    kept: list[int] = []
    skipped: list[str] = []
    pending: list[torch.Tensor] = []
    pending_videos: list[int] = []

    def flush() -> None:
        if not pending:
            return
        frames = torch.stack(pending)  # [V*F, 3, H, W]
        emb_SNE = embed_images(loaded, frames, head_sets, encoder, ablation)
        emb_SVME = emb_SNE.view(len(head_sets), len(pending_videos), n_frames, -1)
        video_SVE = emb_SVME.mean(2)
        if pooling == "renormalised":
            video_SVE = F.normalize(video_SVE, dim=-1)
        pooled.extend(video_SVE.unbind(1))
        kept.extend(pending_videos)
        pending.clear()
        pending_videos.clear()

    per_batch = max(1, batch_size // n_frames)
    for v, path in enumerate(tqdm(task.paths, desc=f"video {task.name}", leave=False, disable=None)):
        try:
            frames = read_frames(path, n_frames)
        except Exception as e:  # noqa: BLE001 - any decoder failure means: skip this video, listed below
            log.debug("%s: cannot decode %s: %s", task.name, path, e)
            skipped.append(task.video_ids[v])
            continue
        pending.extend(transform(im.convert("RGB")) for im in frames)
        pending_videos.append(v)
        if len(pending_videos) >= per_batch:
            flush()
    flush()
    if skipped:
        log.warning("%s: skipped %d undecodable videos: %s", task.name, len(skipped), ", ".join(skipped[:20]))
    if len(kept) < 2:
        raise UserError(f"{task.name}: fewer than 2 decodable videos ({len(skipped)} skipped); nothing to retrieve")
    texts, video_of_text = [], []
    for j, v in enumerate(kept):
        caps = task.captions[v][:1] if caption_mode == "first" else task.captions[v]
        texts.extend(caps)
        video_of_text.extend([j] * len(caps))
    text_TE = embed_texts(loaded, texts)
    videos_SVE = torch.stack(pooled, dim=1)
    results = []
    for s in range(len(head_sets)):
        sim_TV = (text_TE @ videos_SVE[s].T).cpu().numpy()
        metrics = retrieval_metrics(sim_TV, video_of_text)
        metrics["videos"] = float(len(kept))
        metrics["videos_skipped"] = float(len(skipped) + len(task.missing))
        results.append(metrics)
    return results
