"""The edit operations, by name: the one list that ``Edit``, the CLI and its help read.

Kept free of torch and transformers so that building the command line parser stays cheap."""

OPS: dict[str, str] = {
    "clamp": "set to V",
    "add": "add V (for a feature: adds V * W_dec[I])",
    "scale": "multiply by V",
    "ablate": "set to 0",
}
"""What each operation does to latent or unit I."""
