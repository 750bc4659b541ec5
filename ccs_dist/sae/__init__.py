"""Sparse-autoencoder latents as a second kind of unit (issue #25): a TopK SAE at one site of the image tower,
its latents carried into the joint space, described, pruned and attributed like heads.

Layer: above decomposition/spans, below llm. Latent-axis tensors carry no shape suffix: every letter of
:mod:`ccs_dist.core.axes` is taken, so their shapes are said in comments ("[B, n_latents]").
"""
