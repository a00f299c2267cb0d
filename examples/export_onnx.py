"""Export a lazy model to ONNX with a dynamic batch size and run it in onnxruntime,
without a dry run. Needs the onnx extra: pip install "lazyfx[onnx]".

Run: python examples/export_onnx.py
"""

import os
import tempfile

import numpy as np
import onnx
import onnxruntime
import torch
import torch.nn as nn

import lazyfx


class TextClassifier(nn.Module):
    def __init__(self, vocab=1000, classes=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, 64)
        self.conv = nn.LazyConv1d(128, 5, padding=2)
        self.norm = nn.LazyBatchNorm1d()
        self.head = nn.LazyLinear(classes)

    def forward(self, tokens):
        x = self.embed(tokens).transpose(1, 2)      # (B, 64, T)
        x = torch.relu(self.norm(self.conv(x)))     # (B, 128, T)
        return self.head(x.amax(dim=2))             # (B, classes)


model = TextClassifier().eval()  # lazyfx exports a materialized copy; `model` stays lazy
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "classifier.onnx")
    # B and T become ONNX dynamic axes named "B" and "T". Before it returns, lazyfx runs the
    # file in onnxruntime at the example sizes and at a second B and T against the model: a
    # size the exporter baked in would be an error (LFX051), and no file.
    lazyfx.export(model, "B,T:int64", format="onnx", path=path, seed=0)

    graph = onnx.load(path).graph
    print("ONNX input:", [(d.dim_param or d.dim_value) for d in graph.input[0].type.tensor_type.shape.dim])
    print("ONNX output:", [(d.dim_param or d.dim_value) for d in graph.output[0].type.tensor_type.shape.dim])

    # The same parameters in PyTorch (same seed), for comparison.
    reference = lazyfx.materialize(model, "B,T:int64", seed=0)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for batch, length in [(1, 7), (8, 50), (3, 300)]:
        tokens = torch.randint(0, 1000, (batch, length), generator=torch.Generator().manual_seed(batch))
        (logits,) = session.run(None, {name: tokens.numpy()})
        with torch.no_grad():
            expected = reference(tokens).numpy()
        print(f"  tokens {batch}x{length}: logits {logits.shape}, matches PyTorch: {np.allclose(logits, expected, atol=1e-5)}")
