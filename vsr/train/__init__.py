"""Training: HR image folders in, the project's safetensors weights and model card out."""
