"""The names of the score terms, in a module without torch: the model catalogue and the
command line's help read them without loading the networks."""

#: per-element reconstruction errors (``terms.elementwise``)
RECONSTRUCTION_TERMS = ("l1", "mse", "bce")
#: the terms of a Gaussian decoder's negative ELBO and their sums (``terms``)
GAUSSIAN_SCORES = ("unregularized", "elbo", "kl", "log_norm", "recon_kl")
#: the same split for a Gaussian mixture (``models.gmm``)
GMM_SCORES = ("nll", "unregularized", "elbo", "kl", "log_norm")
