"""Pipeline parallelism of Llama 4 over MLX's distributed ``ring`` backend (several Macs)."""
