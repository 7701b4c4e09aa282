"""Top-down pygame view of one world, following the ego, with a hook for HUD overlays.

The renderer reads the world's arrays (see ``takeover.envs.layout``) and never changes them,
so rendering cannot perturb a trajectory. It always draws into an off-screen ``Surface``:
``rgb_array`` returns that surface's pixels and ``human`` blits it to a window, so the two
modes show the same picture and both work headless under ``SDL_VIDEODRIVER=dummy``.

Screen axes: the road runs left to right (``+x`` is to the right), and ``+y`` (the driver's
right, the direction of positive steering) points down, so a vehicle's heading ``psi`` maps
to a screen rotation without a sign flip.

Overlays are callables ``overlay(surface, renderer)`` drawn after the world, in order: the
supervisor's HUD and the live-drive UI use :meth:`Renderer.to_screen`, :attr:`Renderer.font`
and :meth:`Renderer.text` to draw on top.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from takeover.envs import layout as L
from takeover.envs.config import HighwayConfig

Color = tuple[int, int, int]

GRASS: Color = (62, 110, 58)
ROAD: Color = (70, 70, 74)
MARKING: Color = (235, 235, 235)
WORK_ZONE: Color = (112, 92, 60)
SHOULDER: Color = (88, 88, 92)
HAZARD_LIGHT: Color = (255, 190, 0)
"""The ego's hazard lights while its minimal-risk manoeuvre runs (blinking at 1.5 Hz)."""
EGO_COLOR: Color = (40, 220, 90)
"""The ego's fill; no other element uses it, so tests can find the ego by colour."""
CAR_COLOR: Color = (90, 140, 225)
HAZARD_CAR: Color = (190, 110, 220)
STALLED_COLOR: Color = (150, 150, 150)
CONE_COLOR: Color = (255, 140, 0)
PENDING_OUTLINE: Color = (255, 170, 0)
ACTIVE_OUTLINE: Color = (255, 30, 30)
TEXT: Color = (255, 255, 255)

Overlay = Callable[[Any, "Renderer"], None]

DASH, DASH_PERIOD = 3.0, 12.0  # m; lane-divider dashes (as on German motorways, 6/12 halved)
TICK_PERIOD = 50.0  # m between distance ticks on the verge (they make speed visible)


def _import_pygame():
    try:
        import pygame
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "rendering needs pygame: run `pip install pygame-ce` (not `pygame`: the two "
            "install the same module and conflict)"
        ) from err
    return pygame


class Renderer:
    """Draws a world seen from above, centred on the ego.

    Args:
        config: the env's configuration (lanes, lane width, control rate).
        mode: ``"rgb_array"`` (``draw`` returns an ``(H, W, 3)`` uint8 frame) or ``"human"``
            (``draw`` shows a window and returns ``None``).
        width, height: frame size in pixels.
        scale: pixels per metre (7 px/m shows about 140 m of road at 1000 px).
        ego_anchor: horizontal position of the ego as a fraction of the width; left of the
            centre, because what lies ahead matters more than what lies behind.
        realtime: in ``human`` mode, wait so frames come at ``control_hz`` (Gymnasium's
            convention: an env rendered for a person plays in real time). A caller that owns
            its loop and clock (``takeover drive``) passes ``False``.
        caption: draw a one-line status (time, speed, hazard) in the bottom-left corner.
    """

    def __init__(self, config: HighwayConfig, mode: str, *, width: int = 1000,
                 height: int = 300, scale: float = 7.0, ego_anchor: float = 0.35,
                 realtime: bool = True, caption: bool = True) -> None:
        if mode not in ("human", "rgb_array"):
            raise ValueError(f"render mode {mode!r} is not supported; use 'human' or 'rgb_array'")
        if width < 64 or height < 64:
            raise ValueError(f"frame size {width}x{height} is too small; use at least 64x64")
        if scale <= 0:
            raise ValueError(f"scale={scale} must be positive (pixels per metre)")
        pg = _import_pygame()
        self._pg = pg
        self.config = config
        self.mode = mode
        self.width, self.height = int(width), int(height)
        self.scale = float(scale)
        self.ego_anchor = float(ego_anchor)
        self.realtime = realtime
        self.caption = caption
        pg.font.init()
        self.surface = pg.Surface((self.width, self.height))
        self.font = pg.font.Font(None, 20)
        self.big_font = pg.font.Font(None, 36)
        self._window: Window | None = None
        self._clock: Any = None
        self._closed = False
        # the world being drawn, for overlays that want more than the picture
        self.veh: np.ndarray | None = None
        self.wld: np.ndarray | None = None
        self.hazard = "none"
        self._cam_x = 0.0
        w = config.lane_width
        self._cam_y = 0.5 * (config.lanes - 0.5) * w  # the centre of lanes + shoulder
        from takeover.envs.hazards import HAZARDS

        closure = HAZARDS.get("lane_closure")
        self._closure_code = None if closure is None else float(closure.code)

    # --- coordinates ------------------------------------------------------------------
    def to_screen(self, x: float, y: float) -> tuple[int, int]:
        """Pixel position of world point ``(x, y)`` (m) in the current frame."""
        return (int(round(self.width * self.ego_anchor + (x - self._cam_x) * self.scale)),
                int(round(0.5 * self.height + (y - self._cam_y) * self.scale)))

    def text(self, surface: Any, message: str, pos: tuple[int, int], color: Color = TEXT,
             *, big: bool = False, background: Color | None = None) -> Any:
        """Draw ``message`` at ``pos`` (top-left, px); returns the text's ``Rect``."""
        font = self.big_font if big else self.font
        img = font.render(message, True, color, background)
        return surface.blit(img, pos)

    # --- drawing ----------------------------------------------------------------------
    def compose(self, veh: np.ndarray, wld: np.ndarray, hazard: str,
                overlays: Sequence[Overlay] = ()) -> Any:
        """Draw one frame of world ``(veh, wld)`` and each overlay on top into the
        off-screen surface, and return it (a caller owning its window presents it)."""
        if self._closed:
            raise RuntimeError("this Renderer was closed; create a new one (env.render() does)")
        self.veh, self.wld, self.hazard = veh, wld, hazard
        self._cam_x = float(veh[0, L.X])
        surf = self.surface
        surf.fill(GRASS)
        self._draw_road(surf, wld)
        self._draw_vehicles(surf, veh, wld)
        if self.caption:
            self._draw_caption(surf, veh, wld, hazard)
        for overlay in overlays:
            overlay(surf, self)
        return surf

    def draw(self, veh: np.ndarray, wld: np.ndarray, hazard: str,
             overlays: Sequence[Overlay] = ()) -> np.ndarray | None:
        """Draw one frame of world ``(veh, wld)`` and then each overlay on top."""
        pg = self._pg
        surf = self.compose(veh, wld, hazard, overlays)
        if self.mode == "rgb_array":
            buf = pg.image.tobytes(surf, "RGB")
            return np.frombuffer(buf, dtype=np.uint8).reshape(self.height, self.width, 3).copy()
        if self._window is None:
            self._window = Window((self.width, self.height))
            self._clock = pg.time.Clock()
        self._window.present(surf)
        if self.realtime:
            self._clock.tick(self.config.control_hz)
        return None

    def _visible_x(self) -> tuple[float, float]:
        left = self._cam_x - self.width * self.ego_anchor / self.scale
        return left, left + self.width / self.scale

    def _draw_road(self, surf: Any, wld: np.ndarray) -> None:
        pg = self._pg
        cfg = self.config
        w = cfg.lane_width
        x_lo, x_hi = self._visible_x()
        top = self.to_screen(x_lo, -0.5 * w)[1]
        bottom = self.to_screen(x_lo, (cfg.lanes - 0.5) * w)[1]  # the right lane's edge
        edge = self.to_screen(x_lo, (cfg.lanes + 0.5) * w)[1]  # the shoulder's outer edge
        pg.draw.rect(surf, ROAD, (0, top, self.width, bottom - top))
        pg.draw.rect(surf, SHOULDER, (0, bottom, self.width, edge - bottom))
        if self._closure_code is not None and wld[L.HZ_KIND] == self._closure_code:
            lane = self._closure_lane(wld)  # tint the closed stretch of the lane
            if lane is not None:
                a = self.to_screen(wld[L.HZ_X], (lane - 0.5) * w)
                b = self.to_screen(wld[L.HZ_XEND], (lane + 0.5) * w)
                pg.draw.rect(surf, WORK_ZONE, (a[0], a[1], b[0] - a[0], b[1] - a[1]))
        # solid edges, the shoulder's line solid too (it is not a lane)
        for sy in (top, bottom, edge):
            pg.draw.line(surf, MARKING, (0, sy), (self.width, sy), 2)
        for k in range(1, cfg.lanes):
            self._dashes(surf, self.to_screen(x_lo, (k - 0.5) * w)[1], x_lo, x_hi)
        # the route's end: a chequered line across the road
        end = cfg.route
        if x_lo - 2.0 < end < x_hi + 2.0:
            sx = self.to_screen(end, 0)[0]
            sq = max(2, int(0.5 * w * self.scale / 2))
            for k, y in enumerate(range(top, edge, sq)):
                for c in (0, 1):
                    color = MARKING if (k + c) % 2 else (20, 20, 20)
                    pg.draw.rect(surf, color, (sx + c * sq, y, sq, min(sq, edge - y)))
        # distance ticks on the verge so that speed is visible against the background
        x = math.floor(x_lo / TICK_PERIOD) * TICK_PERIOD
        while x <= x_hi:
            sx = self.to_screen(x, 0)[0]
            pg.draw.line(surf, MARKING, (sx, top - 10), (sx, top - 4), 2)
            x += TICK_PERIOD

    def _dashes(self, surf: Any, sy: int, x_lo: float, x_hi: float) -> None:
        pg = self._pg
        x = math.floor(x_lo / DASH_PERIOD) * DASH_PERIOD
        while x < x_hi:
            a, b = self.to_screen(x, 0)[0], self.to_screen(x + DASH, 0)[0]
            pg.draw.line(surf, MARKING, (a, sy), (b, sy), 2)
            x += DASH_PERIOD

    def _closure_lane(self, wld: np.ndarray) -> float | None:
        veh = self.veh
        if veh is None:
            return None
        cones = veh[veh[:, L.KIND] == L.CONE]
        return float(cones[0, L.LANE]) if len(cones) else None

    def _draw_vehicles(self, surf: Any, veh: np.ndarray, wld: np.ndarray) -> None:
        pg = self._pg
        x_lo, x_hi = self._visible_x()
        kinds = veh[:, L.KIND]
        xs = veh[:, L.X]
        idx = np.nonzero((kinds != L.EMPTY) & (xs > x_lo - 10.0) & (xs < x_hi + 10.0))[0]
        hz_idx = int(wld[L.HZ_IDX])
        state = wld[L.HZ_STATE]
        outline = ACTIVE_OUTLINE if state == L.ACTIVE else (
            PENDING_OUTLINE if state == L.PENDING and wld[L.HZ_KIND] != L.NO_HAZARD else None)
        s = self.scale
        for i in idx[::-1]:  # the ego (slot 0) last, on top
            row = veh[i]
            kind = int(row[L.KIND])
            hazard = i == hz_idx or kind in (L.STALLED, L.CONE)
            if kind == L.CONE:
                ctr = self.to_screen(row[L.X], row[L.Y])
                r = max(3, int(0.5 * row[L.LEN] * s))
                pg.draw.circle(surf, CONE_COLOR, ctr, r)
                if outline is not None:
                    pg.draw.circle(surf, outline, ctr, r + 2, 2)
                continue
            if kind == L.EGO:
                color = EGO_COLOR
            elif kind == L.STALLED:
                color = STALLED_COLOR
            else:
                color = HAZARD_CAR if hazard else CAR_COLOR
            pts = self._box(row)
            pg.draw.polygon(surf, color, pts)
            if hazard and outline is not None:
                pg.draw.polygon(surf, outline, pts, 3)
            else:
                pg.draw.polygon(surf, (20, 20, 20), pts, 1)
            # a windscreen stripe shows which way the vehicle faces
            c, sn = math.cos(row[L.PSI]), math.sin(row[L.PSI])
            fx = row[L.X] + c * 0.2 * row[L.LEN]
            fy = row[L.Y] + sn * 0.2 * row[L.LEN]
            hw = 0.4 * row[L.WID]
            pg.draw.line(surf, (30, 30, 40), self.to_screen(fx - sn * hw, fy + c * hw),
                         self.to_screen(fx + sn * hw, fy - c * hw), 2)
            if kind == L.EGO and wld[L.MRM] > 0.5 and int(wld[L.TIME] * 3.0) % 2 == 0:
                for p in pts:  # hazard lights at the four corners
                    pg.draw.circle(surf, HAZARD_LIGHT, p, max(2, int(0.3 * s)))

    def _box(self, row: np.ndarray) -> list[tuple[int, int]]:
        """Screen corners of a vehicle's rotated rectangle."""
        c, s = math.cos(row[L.PSI]), math.sin(row[L.PSI])
        hl, hw = 0.5 * row[L.LEN], 0.5 * row[L.WID]
        x, y = row[L.X], row[L.Y]
        return [self.to_screen(x + c * dl - s * dw, y + s * dl + c * dw)
                for dl, dw in ((hl, hw), (hl, -hw), (-hl, -hw), (-hl, hw))]

    def _draw_caption(self, surf: Any, veh: np.ndarray, wld: np.ndarray, hazard: str) -> None:
        state = ("active" if wld[L.HZ_STATE] == L.ACTIVE else
                 "over" if wld[L.HZ_STATE] == L.OVER else "pending")
        msg = (f"t {wld[L.TIME]:5.1f} s   v {veh[0, L.V]:5.1f} m/s   hazard {hazard}"
               + (f" ({state})" if hazard != "none" else ""))
        color = ACTIVE_OUTLINE if wld[L.HZ_STATE] == L.ACTIVE else TEXT
        self.text(surf, msg, (8, self.height - 20), color, background=(0, 0, 0))

    def close(self) -> None:
        """Close the window (if any). Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._window is not None:
            self._window.close()
            self._window = None


class Window:
    """A resizable (or full-screen) pygame window presenting fixed-size frames scaled to fit,
    letterboxed, so every picture and HUD keeps its layout at any window size.

    Args:
        size: the frames' size in pixels (and the window's initial size).
        fullscreen: open full screen at the display's resolution.
        title: the window's title.
    """

    def __init__(self, size: tuple[int, int], *, fullscreen: bool = False,
                 title: str = "takeover") -> None:
        pg = _import_pygame()
        self._pg = pg
        self.size = (int(size[0]), int(size[1]))
        pg.display.init()
        flags = pg.FULLSCREEN if fullscreen else pg.RESIZABLE
        self.screen = pg.display.set_mode((0, 0) if fullscreen else self.size, flags)
        pg.display.set_caption(title)
        self._closed = False

    def present(self, surface: Any) -> None:
        """Show ``surface`` scaled to the window (aspect ratio kept) and flip."""
        pg = self._pg
        screen = pg.display.get_surface() or self.screen
        sw, sh = screen.get_size()
        fw, fh = surface.get_size()
        if (sw, sh) == (fw, fh):
            screen.blit(surface, (0, 0))
        else:
            k = min(sw / fw, sh / fh)
            w, h = max(1, int(fw * k)), max(1, int(fh * k))
            screen.fill((0, 0, 0))
            screen.blit(pg.transform.smoothscale(surface, (w, h)), ((sw - w) // 2, (sh - h) // 2))
        pg.event.pump()  # keep the window responsive; never drains the queue (the UI owns it)
        pg.display.flip()

    def to_frame(self, pos: tuple[int, int]) -> tuple[int, int] | None:
        """The frame pixel under window pixel ``pos`` (a mouse click), undoing the scaling
        and letterboxing of :meth:`present`; ``None`` on the black bars."""
        pg = self._pg
        screen = pg.display.get_surface() or self.screen
        sw, sh = screen.get_size()
        fw, fh = self.size
        k = min(sw / fw, sh / fh)
        w, h = max(1, int(fw * k)), max(1, int(fh * k))
        x, y = (pos[0] - (sw - w) // 2) / k, (pos[1] - (sh - h) // 2) / k
        return (int(x), int(y)) if 0 <= x < fw and 0 <= y < fh else None

    def close(self) -> None:
        """Close the window. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._pg.display.quit()


def panel(surface: Any, renderer: Renderer, title: str, lines: Sequence[str] = (), *,
          color: Color = TEXT, title_color: Color = TEXT, top: int | None = None) -> None:
    """A card of text over a darkened frame (start, pause, end and questionnaire screens):
    ``title`` in the big font, then ``lines``; centred, or from ``top`` (px) down, e.g.
    below the road so the ego and what happened to it stay visible."""
    pg = renderer._pg
    w, h = surface.get_size()
    shade = pg.Surface((w, h), pg.SRCALPHA)
    shade.fill((0, 0, 0, 120))
    surface.blit(shade, (0, 0))
    imgs = [renderer.big_font.render(title, True, title_color)]
    imgs += [renderer.font.render(line, True, color) for line in lines]
    total = sum(i.get_height() + 6 for i in imgs)
    y = max((h - total) // 2, 4) if top is None else int(top) + 12
    bw = min(max(i.get_width() for i in imgs) + 40, w)
    box = pg.Surface((bw, total + 24), pg.SRCALPHA)
    box.fill((15, 15, 20, 235))
    surface.blit(box, ((w - bw) // 2, y - 12))
    for img in imgs:
        surface.blit(img, ((w - img.get_width()) // 2, y))
        y += img.get_height() + 6
