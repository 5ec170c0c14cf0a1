"""Cheaper inference for the deep recommenders and the query encoder, each measured against the original.

`encoders` (a sequential model's history encoder in PyTorch fp32 / dynamic int8 and ONNX Runtime fp32 / int8),
`onnx` (export, quantisation, sessions), `distill` (a smaller student trained from the teacher's logits), `prune`
(global magnitude pruning), `parity` (max abs difference and NDCG@10 change against the original), `textenc`
(the MiniLM query encoder in ONNX Runtime) and `serving` (what `aisle serve` builds from the `[inference]`
settings). Importing this package imports nothing heavy; import the modules.
"""
