"""Learning from the user: trajectory records, training data for the reference's stacks, the
five IBISAgent rewards, and recipes that fine-tune the policy on established trainers.

The pieces, one responsibility each:

- `records` / `recorder`: the on-disk trajectory record and the opt-in recorder that writes it
  (standard library + numpy only, so the torch-free client and Slicer can use it);
- `reasoning`, `trajectories`: cold-start trajectories from labelled images;
- `samples`, `training_images`: records -> one training sample per applied step;
- `export_llamafactory`, `export_verl`: those samples in the formats LLaMA-Factory and verl read;
- `rewards`, `replay`, `verl_reward`, `trl_rewards`: the five rewards, with this product's
  segmentation tool run in process;
- `trl_data`, `trl_train`, `merge`: LoRA SFT and GRPO through TRL, and merging the adapter.

Nothing here uploads anything: records and exports stay in folders the user names.
"""
