"""Hugging Face ``transformers`` models built from tiny configs (nothing is downloaded),
with every ``nn.Linear`` replaced by ``nn.LazyLinear(out_features, bias=...)``. Their
forwards are far from what torch.fx can trace (mask construction, ``if`` on sizes and
config flags, output dataclasses), so lazyfx analyses them by abstract execution."""

from __future__ import annotations

import torch.nn as nn


def lazify(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` in ``model`` by an ``nn.LazyLinear`` with its options."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, child_name, nn.LazyLinear(child.out_features, bias=child.bias is not None))
    return model.eval()


def bert():
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, type_vocab_size=2)
    return lazify(BertModel(config))


def distilbert():
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(vocab_size=50, dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                              max_position_embeddings=32)
    return lazify(DistilBertModel(config))


def llama():
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         use_cache=False)
    return lazify(LlamaModel(config))


def t5_encoder():
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16)
    return lazify(T5EncoderModel(config))


def vit():
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=32)
    return lazify(ViTModel(config, add_pooling_layer=True))


def clip_vision():
    """CLIP's vision tower: its attention registers ``k_proj, v_proj, q_proj`` but calls
    ``q_proj`` first, so only the first-call order gives a dry run's values."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=32)
    return lazify(CLIPVisionModel(config))


def whisper_encoder():
    """Whisper's audio encoder (two convolutions over mel frames, then attention blocks that
    register ``k_proj`` before the ``q_proj`` they call first)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(num_mel_bins=8, d_model=16, encoder_layers=2, encoder_attention_heads=2,
                           encoder_ffn_dim=32, max_source_positions=8, vocab_size=50, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    return lazify(WhisperEncoder(config))
