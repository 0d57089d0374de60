"""Replaying a recorded click chain through a segmentation tool, the way the episode ran it.

An RL sample stores the clicks the tool had before the step (grouped by step) and the mask the
chain started from. Replaying them step by step (each call gets all clicks so far, the previous
mask and the tool's previous state, exactly as `ibisagent.episode.Episode.apply` does) gives the
current mask and the tool state a new click is added to. Rollouts of one prompt share that
prefix, so replays are cached (least recently used first out), and so are image embeddings.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable, List, Optional, Sequence, Tuple

import numpy as np

from ..clicks import Click
from ..segmenters.base import Segmenter


class ClickReplayer:
    """One segmentation tool, several images: ``use_image(key, image)`` then `current` /
    `after`. ``key`` names an image (e.g. its file path)."""

    def __init__(self, segmenter: Segmenter, cache_size: int = 64) -> None:
        self.segmenter = segmenter
        self.cache_size = cache_size
        self._images: "OrderedDict[Hashable, object]" = OrderedDict()
        self._chains: "OrderedDict[tuple, Tuple[np.ndarray, Optional[np.ndarray]]]" = OrderedDict()
        self._key: Optional[Hashable] = None

    def use_image(self, key: Hashable, image: np.ndarray) -> None:
        """Make ``image`` (RGB uint8) the tool's image, reusing its embedding when seen before."""
        if key == self._key:
            return
        state = self._images.get(key)
        if state is None:
            self.segmenter.set_image(image)
            state = self.segmenter.image_state()
        else:
            self.segmenter.use_image_state(state)
        _remember(self._images, key, state, max(4, self.cache_size // 8))
        self._key = key

    def current(self, start_mask: np.ndarray, groups: Sequence[Sequence[Click]]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(mask, tool state) after replaying ``groups`` from ``start_mask`` on the current image."""
        if self._key is None:
            raise RuntimeError("No image is set: call use_image(key, image) first.")
        start = np.asarray(start_mask, bool)
        cache_key = (self._key, start.tobytes(), tuple(tuple(group) for group in groups))
        if cache_key in self._chains:
            self._chains.move_to_end(cache_key)
            return self._chains[cache_key]
        mask, state = start, None
        clicks: List[Click] = []
        for group in groups:
            clicks.extend(group)
            prediction = self.segmenter.predict(clicks, mask, state)
            mask, state = prediction.mask, prediction.state
        _remember(self._chains, cache_key, (mask, state), self.cache_size)
        return mask, state

    def after(self, start_mask: np.ndarray, groups: Sequence[Sequence[Click]], click: Click) -> np.ndarray:
        """The mask once ``click`` is applied after the replayed chain."""
        mask, state = self.current(start_mask, groups)
        clicks = [c for group in groups for c in group] + [click]
        return self.segmenter.predict(clicks, mask, state).mask


def _remember(cache: OrderedDict, key, value, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)
