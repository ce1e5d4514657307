"""Azure Kinect / Orbbec Femto recordings (`.mkv`, k4arecorder's Matroska format), read with PyAV.

No vendor SDK is needed. A k4arecorder file has a track titled COLOR (MJPG, NV12, YUY2 or BGRA), a
track titled DEPTH (16-bit millimetres, FourCC `b16g`: big-endian, in the depth camera's geometry),
optionally IR and IMU tracks, and a `calibration.json` attachment. Every colour frame is paired
with the depth frame nearest in time, within half a frame period plus the recorded depth delay;
colour frames without one are skipped (their indices are missing, with a warning at the end).
Depth is registered to colour with the file's own calibration (`sensors/k4a_calibration.py`).

Frames: colour at the colour track's full resolution (or `width` pixels wide, resized with area
averaging), depth_raw uint16 millimetres registered to it (depth_scale 0.001, 0 = not seen by the
depth camera), the colour camera's pinhole intrinsics (the colour image is not undistorted; its
lens distortion is used for the registration only), timestamps in seconds of the colour track,
index = the colour frame's number in its track.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.image_header import check_pixels
from sensors.k4a_calibration import DepthRegistration, parse_calibration
from sensors.source import Source, SourceInfo

log = logging.getLogger(__name__)

DEPTH_SCALE = 0.001  # millimetres
DEFAULT_FPS = 30.0
RAW_COLOR = {"NV12", "YUY2", "BGRA"}  # uncompressed colour formats k4arecorder writes


def _tag(stream) -> str:
    try:
        return str(stream.codec_context.codec_tag or "").upper()
    except AttributeError:
        return ""


def _fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and 1 <= float(rate) <= 240:  # Azure Kinect and Femto record at 5-30 fps
            return float(rate)
    return None


class AzureKinectSource(Source):
    """Plays an Azure Kinect / Orbbec Femto `.mkv` recording. `width`: output width (None: colour's own)."""

    def __init__(self, path: str, width: int | None = None) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.width = width
        self._container = None
        self._times: dict[int, tuple[float, float]] = {}

    # -- opening ---------------------------------------------------------------------------------
    def _fail(self, what: str, code: int = 2) -> UserError:
        return UserError(f"'{self.path}' {what}", code)

    def _open(self) -> SourceInfo:
        import av  # PyAV: imported here so that other sources never load FFmpeg

        if not self.path.is_file():
            raise self._fail("does not exist or is not a file: give an Azure Kinect .mkv recording.")
        try:
            container = av.open(str(self.path), mode="r")
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise self._fail("cannot be read as a Matroska (.mkv) file: it is damaged or not a recording.") from exc
        self._container = container
        try:
            return self._inspect(container)
        except BaseException:
            self._close()
            raise

    def _inspect(self, container) -> SourceInfo:
        video = {str(s.metadata.get("title", "")).upper(): s for s in container.streams.video}
        color, depth = video.get("COLOR"), video.get("DEPTH")
        if depth is None or color is None:
            missing = "no DEPTH track" if depth is None else "no COLOR track"
            if not any(k.startswith("K4A_") for k in container.metadata):
                raise self._fail(f"is not an Azure Kinect recording ({missing}): record with k4arecorder or "
                                 "Orbbec's k4a wrapper, with depth and colour on.")
            raise self._fail(f"has {missing}: record it with both depth and colour on (k4arecorder -d and -c).")
        attachments = [s for s in container.streams
                       if s.type == "attachment" and str(getattr(s, "name", "") or s.metadata.get("filename", ""))
                       .lower().endswith(".json")]
        if not attachments:
            raise self._fail("has no calibration attachment (calibration.json), so its depth cannot be aligned "
                             "to colour: use the file as k4arecorder wrote it.")
        self._color, self._depth = color, depth
        cc, dc = color.codec_context, depth.codec_context
        self._color_size = (int(cc.width), int(cc.height))
        self._depth_size = (int(dc.width), int(dc.height))
        check_pixels(*self._color_size, f"The colour track of '{self.path}'")
        pix = str(dc.pix_fmt or "")
        self._depth_dtype = np.dtype("<u2") if _tag(depth) == "Y16 " or pix == "gray16le" else np.dtype(">u2")
        self._color_tag = _tag(color)
        out_w, out_h = self._color_size
        if self.width is not None and self.width != out_w:
            if not 16 <= self.width <= out_w:
                raise UserError(f"The output width {self.width} must be between 16 and {out_w} for '{self.path}'.", 2)
            out_w, out_h = int(self.width), max(1, round(out_h * self.width / self._color_size[0]))
        self._out_size = (out_w, out_h)
        depth_lens, color_lens = parse_calibration(bytes(attachments[0].data), self._depth_size, self._color_size,
                                                   str(self.path))
        self._registration = DepthRegistration(depth_lens, color_lens, self._out_size)
        c = self._registration.color
        self._intrinsics = Intrinsics(fx=c.fx, fy=c.fy, cx=c.cx, cy=c.cy)
        self._fps_value = _fps(color) or DEFAULT_FPS
        try:
            delay_s = abs(float(container.metadata.get("K4A_DEPTH_DELAY_NS", 0))) * 1e-9
        except ValueError:
            delay_s = 0.0
        self._tolerance_s = 0.5 / self._fps_value + delay_s
        self._start_s = None
        self._pairs = self._paired_packets()
        self._skipped = 0
        return SourceInfo(name=self.path.stem, width=out_w, height=out_h, fps=self._fps_value, live=False,
                          frame_count=None, depth_max_m=None)

    # -- pairing ---------------------------------------------------------------------------------
    def _packets(self):
        """(kind, time_s, packet) in file order; a damaged file ends with a UserError saying how far it got."""
        import av

        last_s = None
        try:
            for packet in self._container.demux(self._color, self._depth):
                if packet.size == 0 or packet.pts is None:
                    continue
                kind = "color" if packet.stream.index == self._color.index else "depth"
                t = float(packet.pts * packet.time_base)
                last_s = t if last_s is None else max(last_s, t)
                yield kind, t, packet
        except (av.FFmpegError, OSError) as exc:
            raise UserError(f"'{self.path}' could not be read past {len(self._times)} frames: the file may be "
                            "damaged or cut short.") from exc
        # A file cut short just ends; its header still gives the whole recording's duration.
        duration_s = self._container.duration / 1e6 if self._container.duration else None
        if duration_s is not None and (last_s or 0.0) < duration_s - 1.5 / self._fps_value:
            raise UserError(f"'{self.path}' ends at {last_s or 0.0:.2f} s of its {duration_s:.2f} s: the file is cut "
                            "short or damaged.")

    def _paired_packets(self):
        """(colour index, colour time, colour packet, depth time, depth bytes): each colour frame with the
        depth frame nearest in time (within the tolerance). Memory stays bounded: Matroska interleaves."""
        colors: deque = deque()  # (index, time, packet)
        depths: deque = deque()  # (time, bytes)
        n_color = 0
        ended = False
        stream = self._packets()
        while True:
            if not ended:
                try:
                    kind, t, packet = next(stream)
                except StopIteration:
                    ended = True
                else:
                    if kind == "color":
                        colors.append((n_color, t, packet))
                        n_color += 1
                    else:
                        depths.append((t, bytes(packet)))
            while colors:
                index, t, packet = colors[0]
                # The nearest depth is known once a depth frame at or after t has arrived (or the file ended).
                if not ended and not (depths and depths[-1][0] >= t):
                    break
                colors.popleft()
                while len(depths) >= 2 and abs(depths[1][0] - t) <= abs(depths[0][0] - t):
                    depths.popleft()  # older depth frames that no later colour frame can be nearer to
                if depths and abs(depths[0][0] - t) <= self._tolerance_s:
                    depth_t, data = depths.popleft()
                    yield index, t, packet, depth_t, data
                else:
                    self._skipped += 1
            if ended and not colors:
                return
            while len(depths) > 64 and not colors:  # a long stretch without colour
                depths.popleft()

    # -- frames ----------------------------------------------------------------------------------
    def _decode_color(self, packet, index: int) -> np.ndarray:
        import av

        w, h = self._color_size
        data = None
        try:
            if self._color_tag in RAW_COLOR:
                data = np.frombuffer(bytes(packet), dtype=np.uint8)
                if self._color_tag == "NV12":
                    return cv2.cvtColor(data[: w * h * 3 // 2].reshape(h * 3 // 2, w), cv2.COLOR_YUV2RGB_NV12)
                if self._color_tag == "YUY2":
                    return cv2.cvtColor(data[: w * h * 2].reshape(h, w, 2), cv2.COLOR_YUV2RGB_YUY2)
                return cv2.cvtColor(data[: w * h * 4].reshape(h, w, 4), cv2.COLOR_BGRA2RGB)
            frames = self._color.codec_context.decode(packet)
            if frames:
                image = frames[0].to_ndarray(format="rgb24")
                if image.shape[:2] == (h, w):
                    return image
        except (av.FFmpegError, ValueError) as exc:
            log.debug("colour frame %d: %s", index, exc)
        raise UserError(f"Colour frame {index} of '{self.path}' could not be decoded: the file may be damaged "
                        f"({len(self._times)} frames were read).")

    def _decode_depth(self, data: bytes, index: int) -> np.ndarray:
        w, h = self._depth_size
        if len(data) < w * h * 2:
            raise UserError(f"The depth image paired with colour frame {index} of '{self.path}' is cut short: the "
                            f"file may be damaged ({len(self._times)} frames were read).")
        return np.frombuffer(data, dtype=self._depth_dtype, count=w * h).reshape(h, w).astype(np.uint16)

    def _read(self) -> Frame | None:
        try:
            index, color_t, packet, depth_t, data = next(self._pairs)
        except StopIteration:
            if self._skipped:
                log.warning("%s: %d colour frames had no depth frame within %.0f ms and were skipped",
                            self.path, self._skipped, self._tolerance_s * 1e3)
                self._skipped = 0
            return None
        if self._start_s is None:
            self._start_s = color_t
        color = self._decode_color(packet, index)
        if color.shape[1] != self._out_size[0]:
            color = cv2.resize(color, self._out_size, interpolation=cv2.INTER_AREA)
        depth = self._registration.register(self._decode_depth(data, index))
        timestamp = color_t - self._start_s
        self._times[index] = (timestamp, depth_t - self._start_s)
        return Frame(color=np.ascontiguousarray(color), depth_raw=depth, depth_scale=DEPTH_SCALE,
                     timestamp=timestamp, index=index, intrinsics=self._intrinsics)

    def stream_times(self, index: int) -> tuple[float | None, float | None]:
        """(colour, depth) timestamps in seconds of a frame already read, (None, None) otherwise."""
        return self._times.get(index, (None, None))

    def _close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
