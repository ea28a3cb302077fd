"""The fit loop, GAN training, checkpoints and data-parallel groups."""
