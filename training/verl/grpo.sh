#!/usr/bin/env bash
# GRPO of an SFT-merged IBISAgent checkpoint with verl, on rows written by
#   ibisagent export-training --records RECORDS --out RL_DATA --format verl [--split test]
# The reward is this product's (ibisagent.training.verl_reward: the five rewards, the
# segmentation tool run inside the reward process), so no segmentation server is needed.
# Settings follow the reference's training_scripts/grpo.sh: 4 rollouts per prompt, no KL term,
# vLLM rollout with tensor parallel 2, one node of 8 GPUs. Extra key=value arguments are passed
# on to verl (e.g. trainer.n_gpus_per_node=4).
#
#   MODEL=/runs/ibisagent/sft-merged TRAIN=/data/ibisagent/rl/train.parquet \
#   VAL=/data/ibisagent/rl/test.parquet OUT=/runs/ibisagent/grpo bash training/verl/grpo.sh
#
# Segmentation tool of the reward (default: the product's default tool, CPU):
#   IBISAGENT_REWARD_SEGMENTER=sam2 \
#   IBISAGENT_REWARD_TOOL_OPTIONS='{"config": "configs/sam2.1/sam2.1_hiera_l.yaml", "checkpoint": "/models/sam2.1_hiera_large.pt"}'
set -euo pipefail
: "${MODEL:?set MODEL to the SFT-merged checkpoint folder}"
: "${TRAIN:?set TRAIN to the training parquet}"
VAL="${VAL:-$TRAIN}"
OUT="${OUT:-runs/ibisagent-grpo}"
GPUS="${GPUS:-8}"
reward="$(python -c 'import ibisagent.training.verl_reward as m; print(m.__file__)')"

python3 -m verl.trainer.main_ppo \
    algorithm.adv_estimator=grpo \
    algorithm.use_kl_in_reward=False \
    data.train_files="['$TRAIN']" \
    data.val_files="['$VAL']" \
    data.image_key=images \
    data.train_batch_size=256 \
    data.max_prompt_length=30000 \
    data.max_response_length=2768 \
    data.filter_overlong_prompts=True \
    data.truncation=error \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.model.use_remove_padding=True \
    actor_rollout_ref.model.enable_gradient_checkpointing=True \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=128 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16 \
    actor_rollout_ref.actor.use_kl_loss=False \
    actor_rollout_ref.actor.kl_loss_coef=0.0 \
    actor_rollout_ref.actor.entropy_coeff=0 \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=4 \
    actor_rollout_ref.rollout.tensor_model_parallel_size=2 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.8 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16 \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16 \
    actor_rollout_ref.ref.fsdp_config.param_offload=True \
    custom_reward_function.path="$reward" \
    custom_reward_function.name=compute_score \
    trainer.critic_warmup=0 \
    trainer.logger='["console","tensorboard"]' \
    trainer.project_name=IBISAgent \
    trainer.experiment_name=ibisagent-grpo \
    trainer.n_gpus_per_node="$GPUS" \
    trainer.nnodes=1 \
    trainer.save_freq=40 \
    trainer.test_freq=8 \
    trainer.total_epochs=12 \
    trainer.default_local_dir="$OUT" \
    "$@"
