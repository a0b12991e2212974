"""A camera station: simulator frames, or the user's own image files, over gRPC at a fixed rate; latency
percentiles out.

    edge-xai station --target 127.0.0.1:50051 --rate 10 --count 100 --stations 4 --json
    edge-xai station --target 127.0.0.1:50051 --input photos/ --model line3     # one answer per file printed

Simulated frames are made before the clock starts (thermal, phase, intensity and height as float16
tensors with the pixel pitch); files are read as they are sent, outside the timed call (as training reads
them, `edge.data.loader.read_image`; 8/16-bit images travel as their integers, as a camera sends them, and
everything else as float32, channels named as training named them), so the station measures the service,
not the simulator or the disk. Each station sends on its own schedule (frame i at start + i / rate) with one request in
flight, like a camera on a line.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from edge.errors import InvalidInput
from edge.serve.frames import encode_frame
from edge.sim.sample import simulate_sample
from edge.v1 import inspection_pb2 as pb
from edge.v1 import inspection_pb2_grpc as pb_grpc

CHANNELS = ("thermal", "phase", "intensity", "height")


def make_requests(n: int, seed: int, station: str, dtype: str = "float16",
                  explanations: tuple[int, ...] = ()) -> list[pb.InspectRequest]:
    out = []
    for i in range(n):
        s = simulate_sample(i, seed)
        frame = encode_frame({c: s[c] for c in CHANNELS}, dtype, float(s["pixel_pitch_mm"]))
        out.append(pb.InspectRequest(station_id=station, part_id=f"{station}-{seed}-{i:05d}", frame=frame,
                                     explanations=list(explanations)))
    return out


def input_files(path: Path) -> list[Path]:
    """A file, or every sample file under a folder (images and arrays in the dataset format, masks and
    annotation files left out), sorted."""
    from edge.data import loader

    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InvalidInput(f"--input {path}: no such file or folder")
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in loader.EXTENSIONS
                   and not f.name.endswith(loader.MASK_SUFFIX))
    if not files:
        raise InvalidInput(f"--input {path}: no image or array files ({', '.join(loader.EXTENSIONS)}) under it")
    return files


class FileRequests(Sequence):
    """One request per file, read when it is sent (a folder of 5-MPixel images would not fit in memory
    read beforehand): its channels named as training names them, 8/16-bit images as their integers (the
    server scales them as training did, `integer_scaling`), everything else as float32; the part id is the
    file's path under `root` (else its name). `pixel_pitch_mm`: the camera's pitch, sent with every file
    that records none of its own (an .npz may)."""

    def __init__(self, files: list[Path], model: str = "", explanations: tuple[int, ...] = (),
                 root: Path | None = None, pixel_pitch_mm: float | None = None):
        self.files, self.model, self.explanations = list(files), model, list(explanations)
        self.pixel_pitch_mm = pixel_pitch_mm
        self.root = Path(root) if root is not None and Path(root).is_dir() else None

    def __len__(self) -> int:
        return len(self.files)

    def part_id(self, i: int) -> str:
        f = self.files[i]
        return str(f.relative_to(self.root)) if self.root is not None else f.name

    def __getitem__(self, i: int) -> pb.InspectRequest:
        from edge.data import loader

        img, names, _, meta = loader.read_image(self.files[i], scale=False)
        dtype = str(img.dtype) if img.dtype in (np.uint8, np.uint16) else "float32"
        planes = {n: img[:, :, k] for k, n in enumerate(names)}
        pitch = float(meta.get("pixel_pitch_mm", 0.0) or self.pixel_pitch_mm or 0.0)
        return pb.InspectRequest(part_id=self.part_id(i), model=self.model,
                                 frame=encode_frame(planes, dtype, pitch), explanations=self.explanations)


@dataclass
class StationReport:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    error_messages: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)
    skipped: int = 0          # answers whose asked-for explanations the node skipped (its deferred backlog was full)

    def to_dict(self) -> dict:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        pct = {f"p{q}_ms": float(np.percentile(lat, q)) if self.latencies_ms else None for q in (50, 95, 99)}
        return {"sent": self.sent, "ok": self.ok, "errors": self.errors,
                "rate_hz": self.sent / self.elapsed_s if self.elapsed_s else 0.0, **pct,
                "labels": self.labels, "error_messages": self.error_messages, "skipped": self.skipped}


def channel(target: str, ca: bytes | None = None, cert: bytes | None = None, key: bytes | None = None,
            max_message_mb: int = 64) -> grpc.aio.Channel:
    opts = [("grpc.max_send_message_length", max_message_mb << 20), ("grpc.max_receive_message_length", max_message_mb << 20)]
    if ca is None:
        return grpc.aio.insecure_channel(target, options=opts)
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.aio.secure_channel(target, creds, options=opts)


async def run_stations(target: str, rate_hz: float, count: int, stations: int = 1, seed: int = 500,
                       explanations: tuple[int, ...] = (), timeout_s: float = 5.0, progress: bool = False,
                       stop: asyncio.Event | None = None, tls: dict | None = None,
                       frames: Sequence[pb.InspectRequest] | None = None,
                       on_answer: Callable[[pb.InspectRequest, pb.InspectResponse | None, str], None] | None = None,
                       store_frame: bool = False) -> StationReport:
    """Send `count` frames per station at `rate_hz` each (count 0 = until `stop` is set). frames: the
    requests to send instead of simulated ones (each station cycles through them under its own station
    id; a lazy sequence such as FileRequests is read as it is sent, outside the timed call; a file it
    cannot read counts as an error). on_answer(request, response or None, error message): called for
    every answer. store_frame: ask the node to keep each frame in its inspection store (it does where it
    runs with `store_frames = true`), so operators' verdicts on them can become training data."""
    per_station = count if count else 50
    requests = None
    if not frames:
        requests = [make_requests(per_station, seed + k, f"station-{k + 1}", explanations=explanations)
                    for k in range(stations)]
    report = StationReport()
    async with channel(target, **(tls or {})) as ch:
        stub = pb_grpc.InspectionStub(ch)
        t0 = time.perf_counter()

        def failed(req: pb.InspectRequest, message: str) -> None:
            report.errors += 1
            report.error_messages[message] = report.error_messages.get(message, 0) + 1
            if on_answer is not None:
                on_answer(req, None, message)

        async def one(k: int) -> None:
            i = 0
            while (count and i < count) or (not count and not (stop and stop.is_set())):
                wait = t0 + i / rate_hz - time.perf_counter()
                if wait > 0:
                    if stop is not None:
                        try:
                            await asyncio.wait_for(stop.wait(), wait)
                            return
                        except asyncio.TimeoutError:
                            pass
                    else:
                        await asyncio.sleep(wait)
                if requests is not None:
                    req = requests[k][i % per_station]
                else:
                    n = i % len(frames)
                    req = pb.InspectRequest()        # a copy: the stations share the sequence's requests
                    try:
                        req.CopyFrom(frames[n])
                    except InvalidInput as e:           # an unreadable file: said, and the next one sent
                        report.sent += 1
                        failed(pb.InspectRequest(part_id=frames.part_id(n) if hasattr(frames, "part_id") else ""),
                               str(e))
                        i += 1
                        continue
                    req.station_id = f"station-{k + 1}"
                req.store_frame = store_frame
                report.sent += 1
                t = time.perf_counter()
                try:
                    r = await stub.Inspect(req, timeout=timeout_s)
                    report.latencies_ms.append((time.perf_counter() - t) * 1e3)
                    report.ok += 1
                    report.labels[r.label] = report.labels.get(r.label, 0) + 1
                    report.skipped += bool(r.skipped)
                    if on_answer is not None:
                        on_answer(req, r, "")
                except grpc.aio.AioRpcError as e:
                    failed(req, f"{e.code().name}: {e.details()}")
                i += 1

        await asyncio.gather(*(one(k) for k in range(stations)))
        report.elapsed_s = time.perf_counter() - t0
    return report
