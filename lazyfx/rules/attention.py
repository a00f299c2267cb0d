"""Attention: nn.MultiheadAttention, the Transformer layers and F.scaled_dot_product_attention."""
