"""IBISAgent engine: segmentation as a sequence of agent decisions (think -> click -> segment).

The layout, each layer using only the ones below it (no import cycle, a test checks):

- commands: `cli` (the ``ibisagent`` command), `demo`, `headless`, `evaluate`, `evaluate3d`,
  `propagate_files`, `training.commands`;
- `engine`: the one place a policy and a tool are built from names and options;
- sessions: `session` (the interface, its records, listeners and the one run loop), `episode`
  (2D, in process), `volume_episode` (propagation through the slices), `slice_stack`, `volume_slices`,
  `carry`;
- wire: `client` (torch-free), `protocol`, `errors` (every error and its advice), `mask_codec`,
  `image_codec`; the `server` package (FastAPI, the ``server`` extra) on the other end;
- `policies` and `segmenters`: registries of who proposes the clicks and what turns them into
  a mask (torch only inside the backends that need it); `training`: records, exports, rewards;
- basics: `actions` (the model's grammar), `clicks`, `annotator`, `imaging`, `image_io`,
  `metrics`, `render`, `safe_io` (every file written), `sample_data`, `parallel`, `registry`.

Heavy backends (torch, transformers, SAM) are imported only by the policy or tool that needs
them; importing this package costs nothing, and its wire and session modules import on Python 3.9
with the standard library and numpy alone (Slicer uses them from ``IBISAgentLib``).
"""

__version__ = "0.1.0"
