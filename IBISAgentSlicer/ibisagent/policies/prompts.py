"""The words a model-backed policy sends: prompt templates and the chat messages of one turn.

Prompts live in three text files so a user can match the wording a checkpoint was trained with
without touching code (see ``ibisagent/prompts/README.md``):

- ``system.txt``: the role, the rules and the output grammar. Empty means no system message
  (IBISAgent's RL data had none).
- ``first_turn.txt``: the user text when the mask is empty (initialisation).
- ``refinement.txt``: the user text when a mask is shown (refinement, including "continue my
  mask", where the user's own mask is the first thing the model sees).

Placeholders in braces are filled per turn: ``{request}`` (the user's words), ``{step}`` (the
1-based number of the step being proposed) and ``{clicks}`` (clicks applied so far). ``{{`` and
``}}`` write literal braces. Templates are checked when loaded, so a typo fails at start-up, not
halfway through an episode.

A turn is Markov on query + overlay, as IBISAgent was trained: the system message and one user
message holding exactly one image (the green overlay of the current mask, sized for the model)
followed by the text. No earlier turns are sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

from PIL import Image

from ..imaging import MODEL_MAX_PIXELS, model_view
from .base import Observation

#: The templates shipped with the package.
PACKAGE_PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
SYSTEM_FILE = "system.txt"
FIRST_TURN_FILE = "first_turn.txt"
REFINEMENT_FILE = "refinement.txt"
TEMPLATE_FILES = (SYSTEM_FILE, FIRST_TURN_FILE, REFINEMENT_FILE)
PLACEHOLDERS = ("request", "step", "clicks")

FIRST = "first"  # the mask is empty: initialisation
REFINEMENT = "refinement"  # a mask is shown

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def fill(template: str, values: Dict[str, object]) -> str:
    """Replace ``{name}`` by ``values[name]``; ``{{``/``}}`` become literal braces.

    Raises ValueError for an unknown placeholder or an unmatched brace.
    """

    def replace(match: "re.Match[str]") -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name is None:
            raise ValueError("has an unmatched brace; write {{ or }} for a literal brace.")
        if name not in values:
            raise ValueError(f"uses the unknown placeholder {{{name}}}; known: {', '.join(PLACEHOLDERS)}.")
        return str(values[name])

    return _TOKEN.sub(replace, template)


@dataclass(frozen=True)
class PromptTemplates:
    """The three templates and the folder they came from (shown in policy descriptions)."""

    system: str
    first_turn: str
    refinement: str
    folder: str

    def turn(self, observation: Observation, max_pixels: int = MODEL_MAX_PIXELS) -> "Turn":
        """The turn for ``observation``: first turn if its mask is empty, refinement otherwise."""
        kind = REFINEMENT if observation.mask.any() else FIRST
        template = self.refinement if kind == REFINEMENT else self.first_turn
        values = {"request": observation.request, "step": observation.step + 1, "clicks": len(observation.clicks)}
        image = model_view(observation.image, observation.mask, max_pixels)
        return Turn(kind, fill(self.system, values) or None, fill(template, values), image)


def load_templates(folder: Union[None, str, Path] = None) -> PromptTemplates:
    """Read the templates from ``folder`` (a user's own set) or, when None, the package's.

    A user folder must hold all three files, so a checkpoint's wording is never silently mixed
    with ours. One trailing line break per file is ignored (editors add it).
    """
    path = PACKAGE_PROMPTS if folder is None else Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"The prompt folder {path} does not exist.")
    missing = [name for name in TEMPLATE_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"The prompt folder {path} lacks {', '.join(missing)}; it needs all of {', '.join(TEMPLATE_FILES)}."
        )
    texts = {}
    probe = {name: "" for name in PLACEHOLDERS}
    for name in TEMPLATE_FILES:
        try:
            text = (path / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"The prompt template {path / name} is not UTF-8 text.") from None
        text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
        try:
            fill(text, probe)
        except ValueError as error:
            raise ValueError(f"The prompt template {path / name} {error}") from None
        texts[name] = text
    return PromptTemplates(texts[SYSTEM_FILE], texts[FIRST_TURN_FILE], texts[REFINEMENT_FILE], str(path))


@dataclass(frozen=True)
class Turn:
    """One request to the model. ``system`` is None when the system template is empty."""

    kind: str
    system: Optional[str]
    text: str
    image: Image.Image

    def messages(self, image_part: dict) -> List[dict]:
        """Chat messages in the content-list form both transformers and OpenAI servers accept.

        ``image_part`` is how the caller's API carries the image (a transformers
        ``{"type": "image"}`` entry, or an OpenAI ``image_url`` entry); it comes before the text,
        where IBISAgent's training data put the image.
        """
        messages = []
        if self.system is not None:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        messages.append({"role": "user", "content": [image_part, {"type": "text", "text": self.text}]})
        return messages
