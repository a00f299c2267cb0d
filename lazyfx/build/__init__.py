"""Stage 5, build: turn the analysis into models and files.

``rewrite`` makes the eager model (materialization), ``checkpoint`` resolves
or checks lazy shapes against a state_dict, ``exporters`` writes TorchScript,
ONNX and ``torch.export`` programs.
"""
